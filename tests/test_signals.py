"""Signal types: the hex codec round-trips and our hashes are the interchange hashes."""

from __future__ import annotations

import hashlib
import io
import re

import imagehash
import numpy as np
import pdqhash
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from hashmatch.codec import HashFormatError
from hashmatch.hashing import hash_bytes
from hashmatch.images import ImageError, ImageSource, decode_rgb
from hashmatch.signals import SIGNALS, UnknownSignalError, get_signal
from tests.hostile_hex import WHITESPACE, spaced_hex

SIGNAL_NAMES = sorted(SIGNALS)


@given(name=st.sampled_from(SIGNAL_NAMES), data=st.data())
def test_hex_round_trips(name: str, data: st.DataObject) -> None:
    signal = get_signal(name)
    raw = data.draw(st.binary(min_size=signal.nbytes, max_size=signal.nbytes))
    text = signal.to_hex(raw)
    assert len(text) == signal.bits // 4
    assert signal.parse_hex(text) == raw
    assert signal.parse_hex(text.upper()) == raw
    assert signal.check_bytes(raw) == raw


@given(name=st.sampled_from(SIGNAL_NAMES), data=st.data())
def test_wrong_lengths_are_refused(name: str, data: st.DataObject) -> None:
    signal = get_signal(name)
    raw = data.draw(st.binary(max_size=64).filter(lambda b: len(b) != signal.nbytes))
    with pytest.raises(HashFormatError, match=f"{name} hash must be {signal.nbytes} bytes"):
        signal.check_bytes(raw)
    with pytest.raises(HashFormatError, match=f"expected {signal.bits // 4} hex characters"):
        signal.parse_hex(raw.hex())


def test_non_hex_is_refused_with_the_offending_character() -> None:
    with pytest.raises(HashFormatError, match="not hex: contains 'g'"):
        get_signal("phash").parse_hex("0123456789abcdeg")


def test_unknown_signal_names_the_known_ones() -> None:
    with pytest.raises(UnknownSignalError) as err:
        get_signal("photodna")
    assert "unknown signal 'photodna'" in str(err.value)
    assert "pdq" in str(err.value) and "sha256" in str(err.value)


def test_pdq_hex_is_the_reference_hex(photos: dict[str, bytes]) -> None:
    """Bits joined most significant first, as PDQ's reference and python-threatexchange do."""
    data = photos["astronaut"]
    bits, quality = pdqhash.compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    reference = f"{int(''.join(str(int(b)) for b in bits), 2):064x}"
    result = get_signal("pdq").compute(ImageSource(data))
    assert get_signal("pdq").to_hex(result.hash) == reference
    assert result.quality == quality == 100


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("phash", imagehash.phash),
        ("dhash", imagehash.dhash),
        ("ahash", imagehash.average_hash),
        ("whash", imagehash.whash),
    ],
)
def test_imagehash_hex_is_imagehash_str(photos: dict[str, bytes], name: str, fn: object) -> None:
    data = photos["coffee"]
    expected = str(fn(Image.open(io.BytesIO(data)).convert("RGB")))  # type: ignore[operator]
    result = get_signal(name).compute(ImageSource(data))
    assert get_signal(name).to_hex(result.hash) == expected
    assert result.quality is None


def test_digests_are_of_the_file_bytes(photos: dict[str, bytes]) -> None:
    data = photos["camera"]
    results = {h.signal: h.hash for h in hash_bytes(data, [SIGNALS["md5"], SIGNALS["sha256"]])}
    assert results == {"md5": hashlib.md5(data).digest(), "sha256": hashlib.sha256(data).digest()}


def test_every_signal_has_its_bit_length(photos: dict[str, bytes]) -> None:
    for result in hash_bytes(photos["chelsea"], list(SIGNALS.values())):
        assert len(result.hash) * 8 == SIGNALS[result.signal].bits


def test_undecodable_image_is_a_clear_error() -> None:
    with pytest.raises(ImageError, match="not a recognised image format"):
        decode_rgb(b"this is not an image")
    png_head = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    with pytest.raises(ImageError):
        decode_rgb(png_head)


def flat_image(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("color", [(0, 0, 0), (255, 255, 255), (128, 128, 128), (200, 30, 30)])
def test_flat_images_hash_to_degenerate_entries(color: tuple[int, int, int]) -> None:
    """A flat image's hash would match huge numbers of innocent uploads: never listable."""
    for result in hash_bytes(flat_image(color), [s for s in SIGNALS.values() if not s.exact]):
        signal = SIGNALS[result.signal]
        assert signal.degenerate(result.hash, result.quality), (result.signal, color)
        if signal.name == "pdq":  # without its quality score, too (CSV and hex lists carry none)
            assert signal.degenerate(result.hash, None), color


def test_real_photos_are_listable(photos: dict[str, bytes]) -> None:
    """Every bundled photo and its edits pass, but for page.png's all-ones dhash and the
    PDQ of clock_motion.png, whose quality (34) is below what PDQ's authors accept."""
    from hashmatch.demo.standins import EDITS

    refused = set()
    for name, data in photos.items():
        for copy in [data] + [edit(data) for edit in EDITS.values()]:
            for r in hash_bytes(copy, list(SIGNALS.values())):
                if SIGNALS[r.signal].degenerate(r.hash, r.quality):
                    refused.add((name, r.signal))
    assert refused == {("page", "dhash"), ("clock_motion", "pdq")}


def test_degenerate_reasons_name_the_problem() -> None:
    pdq = get_signal("pdq")
    assert "all bits zero" in str(pdq.degenerate(bytes(32)))
    assert "all bits one" in str(get_signal("sha256").degenerate(b"\xff" * 32))
    assert "sets 1 of 64 bits" in str(
        get_signal("phash").degenerate(bytes.fromhex("8000000000000000"))
    )
    low_quality = pdq.degenerate(bytes.fromhex("0f" * 32), quality=34)
    assert low_quality == "pdq quality 34 is below 50: too little detail to match safely"
    assert get_signal("md5").degenerate(bytes(range(16))) is None


@given(name=st.sampled_from(SIGNAL_NAMES), data=st.data())
def test_full_length_hex_with_whitespace_between_byte_pairs_is_refused(
    name: str, data: st.DataObject
) -> None:
    """`bytes.fromhex` skips whitespace: such a field has the right length but fewer bytes."""
    signal = get_signal(name)
    text = data.draw(spaced_hex(signal.nbytes))
    at = next(i for i, c in enumerate(text) if c in WHITESPACE)
    with pytest.raises(HashFormatError, match=re.escape(f"contains {text[at]!r} at position {at}")):
        signal.parse_hex(text)


def test_the_codec_strips_nothing_a_file_reader_strips_whole_fields() -> None:
    pdq = get_signal("pdq")
    with pytest.raises(HashFormatError, match="not hex: contains ' ' at position 0"):
        pdq.parse_hex(" " + "ab" * 31 + "a")
    assert pdq.parse_hex("AB" * 32) == bytes([0xAB]) * 32
