"""hashmatch: match hashes of known abusive imagery without sharing images.

This package holds what callers and both server sides share: signal types,
local hashing, hash codecs, the client SDK and the CLI.
"""

__version__ = "0.1.0"
