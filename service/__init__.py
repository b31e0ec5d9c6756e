"""Server side, downstream half: loads snapshots and answers MatchService checks."""
