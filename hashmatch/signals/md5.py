"""md5 of the file bytes: catches byte-identical re-uploads; lists from older systems use it."""

from hashmatch.signals.digest import DigestSignal

MD5 = DigestSignal("md5", 128)
