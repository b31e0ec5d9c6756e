"""The hex shape that once got past the length check: exactly as many characters as a
signal's hex, but with whitespace between byte pairs, which `bytes.fromhex` skips, so
it decoded to a short hash. Generated on purpose; a generic text strategy almost never
draws it."""

from __future__ import annotations

from hypothesis import strategies as st

# Every character bytes.fromhex skips between byte pairs (ASCII whitespace).
WHITESPACE = " \t\n\r\x0b\x0c"


@st.composite
def spaced_hex(draw: st.DrawFn, nbytes: int) -> str:
    """Full-length hex for an `nbytes` hash, `2 * k` of its characters whitespace between
    byte pairs (so it holds only `nbytes - k` bytes), never at either end."""
    k = draw(st.integers(1, nbytes // 2))
    pairs = draw(st.binary(min_size=nbytes - k, max_size=nbytes - k)).hex()
    pairs = "".join(c.upper() if draw(st.booleans()) else c for c in pairs[:4]) + pairs[4:]
    gaps = [""] * (nbytes - k - 1)
    for _ in range(2 * k):
        gaps[draw(st.integers(0, len(gaps) - 1))] += draw(st.sampled_from(WHITESPACE))
    text = pairs[:2] + "".join(g + pairs[2 * i + 2 : 2 * i + 4] for i, g in enumerate(gaps))
    assert len(text) == 2 * nbytes and text == text.strip(), text
    return text


# One fixed instance, as the issue reported it: `00 11 ` and 58 hex digits.
SPACED_PDQ_HEX = "00 11 " + "a5" * 29
assert len(SPACED_PDQ_HEX) == 64
