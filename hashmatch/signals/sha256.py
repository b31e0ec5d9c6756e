"""sha256 of the file bytes: catches byte-identical re-uploads."""

from hashmatch.signals.digest import DigestSignal

SHA256 = DigestSignal("sha256", 256)
