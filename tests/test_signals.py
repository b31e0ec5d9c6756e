"""Signal types: the hex codec round-trips and our hashes are the interchange hashes."""

from __future__ import annotations

import hashlib
import io

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
