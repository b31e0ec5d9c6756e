"""Generated gRPC code for proto package hashmatch.v1 (built by proto/generate.py)."""
