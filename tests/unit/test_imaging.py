"""Decoding: each kind of bad input refused with its kind and a reason, EXIF orientation
honoured (a phone's HEIC too), a wide photograph reduced no further than its short side
allows, 16-bit greyscale scaled rather than clipped."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support.bad_images import jpeg_bytes, png_header_only

from edge.ingest.imaging import ImageRejectedError, decode, preprocess, thumbnail_jpeg


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (jpeg_bytes()[:300], "corrupt"),
        (png_header_only(20000, 20000), "too_large"),
        (b"hello, I am a text file\n" * 10, "not_an_image"),
    ],
    ids=["zero-byte", "truncated-jpeg", "decompression-bomb", "text-as-jpg"],
)
def test_decode_refuses_bad_input_with_its_kind(data: bytes, kind: str) -> None:
    with pytest.raises(ImageRejectedError) as e:
        decode(data, max_pixels=64_000_000)
    assert e.value.kind == kind and e.value.reason


def test_exif_orientation_is_honoured() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    got = decode(jpeg_bytes((80, 40), exif=exif.tobytes()), 10**8)
    assert (got.width, got.height) == (40, 80)


def heic_bytes(im: Image.Image, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "HEIF", exif=exif.tobytes(), quality=90)
    return buf.getvalue()


def test_a_phone_s_heic_is_decoded_upright_and_kept_as_heic() -> None:
    im = Image.new("RGB", (80, 40), (220, 20, 20))
    im.paste((20, 20, 220), (40, 0, 80, 40))  # left red, right blue as stored
    got = decode(heic_bytes(im, orientation=6), 10**8)  # displayed turned 90 degrees clockwise
    assert (got.format, got.ext, got.image.size) == ("HEIF", "heic", (40, 80))
    top, bottom = np.asarray(got.image)[5, 20], np.asarray(got.image)[75, 20]
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], "red above blue, upright"
    with pytest.raises(ImageRejectedError) as e:
        decode(heic_bytes(im)[:-200], 10**8)
    assert e.value.kind == "corrupt"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_wide_photograph_keeps_its_short_side_for_a_square_model_input(fmt: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (2560, 720), (90, 120, 150)).save(buf, fmt)
    got = decode(buf.getvalue(), 10**8, target=256)
    assert min(got.image.size) >= 256, "a 224 input would be stretched up from fewer rows"
    assert max(got.image.size) < 2560  # still reduced: a JPEG by draft, a PNG after decoding
    assert got.image.size[0] * 720 == pytest.approx(got.image.size[1] * 2560, rel=0.02)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    x = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "PNG")
    got = decode(buf.getvalue(), 10**8)
    arr = preprocess(got.image, {"size": 64, "color_mode": "L", "scale": 1 / 255})
    assert arr.shape == (64, 64, 1)
    assert arr.min() == 0.0 and arr.max() > 0.99 and 0.4 < arr.mean() < 0.6
    assert got.image.mode == "F", "its bits are kept until preprocessing"


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_twelve_bits_stored_in_sixteen_read_as_twelve(fmt: str) -> None:
    """A radiograph's 12-bit samples in a 16-bit file: 4095 is white, not 1/16 grey."""
    x = (np.linspace(0, 4095, 64 * 64).reshape(64, 64)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, fmt)
    got = decode(buf.getvalue(), 10**8)
    arr = preprocess(got.image, {"size": 64, "color_mode": "L", "scale": 1 / 255})
    assert arr.max() > 0.99 and 0.4 < arr.mean() < 0.6
    np.testing.assert_allclose(arr[..., 0], x / 4095, atol=0.01)
    assert Image.open(io.BytesIO(thumbnail_jpeg(got.image, 32))).mode == "RGB"
