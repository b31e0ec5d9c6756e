"""The demo and the test harness: benign stand-in photos (standins), a real server in a
subprocess (serve_process) and the end-to-end story (story).

Not part of the SDK a platform imports (hashmatch.client, hashmatch.hashing,
hashmatch.submission): nothing there imports this package.
"""
