"""Server side, upstream half: the hash store, list imports and snapshot builds."""
