"""The bounds of every text field a caller can have the server keep: length and characters.

Text that is stored is a channel to store anything at all, an encoded image included, on a
server that promises never to hold one. So each field has a limit, and the gRPC handlers,
the import and sync paths and the store itself (defence in depth) all check these same
bounds. Anonymous victims' cases carry no free text at all (ANONYMOUS_VARIANTS only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hashmatch.variants import LISTING_VARIANT_NAMES

# List names end up in metrics labels, logs and sync cursors: a plain identifier.
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._:@+-]*[A-Za-z0-9._:@+-])?")


class OutOfBounds(ValueError):
    """A text field over its limit or with characters it may not hold; the message names
    the field and is said to the caller as is (gRPC INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class TextBound:
    field: str
    max_chars: int
    name_like: bool = False  # letters, digits and ` ._:@+-`, as _NAME; else printable text
    required: bool = False

    def problem(self, value: str) -> str | None:
        """Why `value` can't be kept in this field, or None."""
        if not value:
            return f"{self.field} is required" if self.required else None
        if len(value) > self.max_chars:
            return (
                f"{self.field} is {len(value)} characters, more than the {self.max_chars} allowed"
            )
        if self.name_like and not _NAME.fullmatch(value):
            return (
                f"{self.field} {value[:40]!r} may hold only ASCII letters, digits, spaces "
                "and ._:@+- (starting with a letter or digit, without outer spaces)"
            )
        if not self.name_like and not value.isprintable():
            return (
                f"{self.field} may hold only printable characters "
                "(no control, format or line-break characters)"
            )
        return None

    def check(self, value: str | None, error: type[ValueError] = OutOfBounds) -> None:
        """`error` (naming the field) unless `value` fits this field."""
        if (problem := self.problem(value or "")) is not None:
            raise error(problem)


LIST_NAME = TextBound("list name", 128, name_like=True, required=True)
OWNER = TextBound("owner", 200)
DESCRIPTION = TextBound("description", 1_000)
SOURCE_REF = TextBound("source_ref", 200)
# An uploader's own name, or the sync source ("sync:HOST:PORT/LIST") an entry came from.
SUBMITTER = TextBound("submitter", 400)
VARIANT = TextBound("variant", 40)
TENANT = TextBound("tenant", 100, required=True)
# Not stored, but still bounded: they are looked up and may be echoed in errors.
CASE_ID = TextBound("case_id", 64, required=True)

# A video's vPDQ hash: ten hours at vPDQ's default of one frame a second. A frame's text
# (a pytx item or a C++ tool line) is 64 hex digits, a quality, a timestamp and perhaps a
# frame number; nothing longer is one. Timestamps beyond 10⁷ s (115 days) are not video.
MAX_VIDEO_FRAMES = 36_000
MAX_VPDQ_FRAME_CHARS = 120
MAX_VIDEO_SECONDS = 10_000_000.0
WITHDRAWAL_SECRET = TextBound("withdrawal_secret", 128, required=True)

# What an anonymous victim's case may say beside its hashes: which listing variant each
# hash is (hashmatch.variants), from a fixed set, so no free text at all.
ANONYMOUS_VARIANTS = frozenset({"", *LISTING_VARIANT_NAMES} - {"original"})


def anonymous_case_problem(source_ref: str, variant: str) -> str | None:
    """Why a hash of an anonymous case can't be kept as sent, or None."""
    if source_ref:
        return "an anonymous case carries no free text: source_ref must be empty"
    if variant not in ANONYMOUS_VARIANTS:
        return (
            f"variant {variant[:40]!r} is not a listing variant of hashmatch.variants; "
            "an anonymous case carries no free text"
        )
    return None
