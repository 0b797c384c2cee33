"""Images in and out: decoding with its failure kinds, preprocessing as the bundle says,
thumbnails, class masks and attention heat maps as PNG.

Decoding is where bad input is caught, so every failure becomes an `ImageRejectedError` with a kind
that `/metrics` counts and a reason a person can read in the `rejected/` folder.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict

from edge.ingest import dicom
from edge.ingest.dicom import is_dicom

EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "WEBP": "webp",
    "HEIF": "heic",
    "DICOM": "dcm",
}
"""The formats accepted, and the extension an original is stored under. Pillow is asked for
these only (`formats=`): anything else is refused before a decoder for it is even tried."""
ACCEPTED = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF")  # MPO opens as JPEG
# HEIF/HEIC, what phones save photographs as, through pillow-heif's own libheif. It turns the
# pixels upright itself (and reads the orientation back as 1), so `_UPRIGHT` leaves them be.
pillow_heif.register_heif_opener()
# What HTTP and S3 are told an original is, by its extension.
MEDIA_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "webp": "image/webp",
    "heic": "image/heic",
    "dcm": "application/dicom",
}
# EXIF orientation -> the transpose that turns the pixels upright.
_UPRIGHT = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}


class Preprocessing(BaseModel):
    """How a bundle wants its images: a square of `size`, in `color_mode`, times `scale`."""

    model_config = ConfigDict(extra="forbid")
    size: int
    channels: Literal[1, 3]
    color_mode: Literal["L", "RGB"]
    resize: Literal["bilinear", "nearest"] = "bilinear"
    scale: float
    layout: Literal["NHWC"] = "NHWC"
    dtype: Literal["float32"] = "float32"


def media_type(ext: str) -> str:
    return MEDIA_TYPES.get(ext, "application/octet-stream")


# Names a camera or editor gives to files it is still writing; never ingested.
TEMP_SUFFIXES = (".tmp", ".part", ".crdownload", ".swp", ".partial", "~")


class ImageRejectedError(ValueError):
    """Input that is not a usable image; `kind` is the metrics label."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class DecodeBusyError(RuntimeError):
    """Too many large images are being decoded at once; try again shortly (HTTP 503)."""


class DecodeBudget:
    """Bytes of decoded pixels allowed in flight at once, so a burst of large images waits
    instead of multiplying memory; small images decode side by side. An image larger than the
    whole budget decodes alone."""

    def __init__(self, max_bytes: int, wait_s: float) -> None:
        self.max_bytes, self.wait_s = max_bytes, wait_s
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        cost = min(cost, self.max_bytes)
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self.used + cost > self.max_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DecodeBusyError(
                        f"busy decoding other large images ({self.used >> 20} MB in flight)"
                    )
                self._cond.wait(left)
            self.used += cost
        try:
            yield
        finally:
            with self._cond:
                self.used -= cost
                self._cond.notify_all()


def pixel_bytes(im: Image.Image) -> int:
    """What decoding `im` allocates: Pillow keeps multi-band pixels in 4 bytes."""
    per = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}.get(im.mode, 4)
    return im.width * im.height * per


@dataclass
class Decoded:
    """An upright RGB or L image (F, 0 to 255, for a radiograph's 12 to 16 bits), shrunk to
    what analysis and thumbnails need, and what was learnt decoding it (`width` and `height`
    are the original's, upright)."""

    image: Image.Image
    format: str
    ext: str
    width: int
    height: int
    kept: bytes | None = None
    """The file to keep instead of the one received (a de-identified DICOM)."""
    attributes: dict[str, str] = field(default_factory=dict)
    """What the file says a user may filter on (a DICOM's modality, body part...)."""


def decode(
    data: bytes,
    max_pixels: int,
    max_side: int = 20000,
    target: int = 1024,
    budget: DecodeBudget | None = None,
    keep_identity: bool = False,
) -> Decoded:
    """Decode fully (so truncation is caught now), refusing oversize images before any pixel
    is read, keeping memory near what `target` (the side anything needs, a square model input
    or a thumbnail) requires:
    JPEG decodes at a reduced scale (`draft`), other formats are shrunk right after decoding,
    and the image is turned upright by its EXIF orientation. A DICOM file is recognised before
    any other format (its preamble may be a TIFF header) and read as `edge.ingest.dicom` says;
    `keep_identity`: keep it as received rather than de-identified."""
    if not data:
        raise ImageRejectedError("empty", "zero-byte file")
    if is_dicom(data):
        return decode_dicom(data, max_pixels, max_side, target, budget, keep_identity)
    fmt = "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data), formats=ACCEPTED)
            w, h = im.size
            fmt = im.format or fmt
            _check_size(w, h, max_pixels, max_side)
            orientation = _orientation(im)
            if fmt in ("JPEG", "MPO"):
                im.draft("RGB" if im.mode not in ("L", "1") else "L", (target, target))
            with budget.reserve(pixel_bytes(im)) if budget else contextlib.nullcontext():
                im.load()
                im = _shrink(im, target)
    except ImageRejectedError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageRejectedError("too_large", f"decompression bomb refused ({e})") from None
    except UnidentifiedImageError:
        raise ImageRejectedError(
            "not_an_image", f"not an image in an accepted format ({', '.join(ACCEPTED)})"
        ) from None
    except MemoryError:
        raise ImageRejectedError("too_large", "not enough memory to decode it") from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise ImageRejectedError("corrupt", f"cannot decode {fmt} data ({e})") from None
    for op in _UPRIGHT.get(orientation, []):
        im = im.transpose(op)
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return Decoded(_displayable(im), fmt, EXTENSIONS[fmt], w, h)


def decode_dicom(
    data: bytes,
    max_pixels: int,
    max_side: int,
    target: int,
    budget: DecodeBudget | None,
    keep_identity: bool,
) -> Decoded:
    try:
        head = dicom.header(data)
        _check_size(head.columns, head.rows, max_pixels, max_side)
        with budget.reserve(head.pixel_bytes) if budget else contextlib.nullcontext():
            got = dicom.read(data, keep_identity)
            im = _shrink(_dicom_image(got.pixels), target)
    except dicom.DicomRefusedError as e:
        raise ImageRejectedError(e.kind, e.reason) from None
    return Decoded(im, "DICOM", "dcm", head.columns, head.rows, got.kept, got.attributes)


def _dicom_image(pixels: np.ndarray) -> Image.Image:
    """F (0 to 255) for greyscale, RGB for colour, from [0, 1] floats scaled in place (they
    are ours, and tens of millions of them)."""
    pixels *= 255.0
    if pixels.ndim == 2:
        return Image.fromarray(pixels)
    pixels += 0.5
    return Image.fromarray(pixels.astype(np.uint8))


def _displayable(im: Image.Image) -> Image.Image:
    """RGB or L, or F (0 to 255) for greyscale of more than 8 bits: a 16-bit radiograph keeps
    its bits until the model's preprocessing, as a DICOM's do. Integer samples are scaled by
    the bit depth their values reach (12 bits stored in 16, as radiographs often are, read as
    12: 4095 is white), float ones by their maximum."""
    if im.mode in ("RGB", "L"):
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        x = np.array(im, dtype=np.float32)  # a copy: scaled in place below
        peak = max(float(x.max()), 1.0)
        top = peak if im.mode == "F" else float(2 ** max(8, math.ceil(math.log2(peak + 1))) - 1)
        x *= 255.0 / top
        return Image.fromarray(np.clip(x, 0.0, 255.0, out=x))
    return im.convert("RGB")


def _check_size(w: int, h: int, max_pixels: int, max_side: int) -> None:
    if w > max_side or h > max_side:
        raise ImageRejectedError("too_large", f"{w}x{h}: a side is over the limit of {max_side}")
    if w * h > max_pixels:
        raise ImageRejectedError(
            "too_large", f"{w}x{h} = {w * h} pixels is over the limit of {max_pixels}"
        )


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if isinstance(value, int) else 1
    except (OSError, ValueError, SyntaxError, struct.error):
        return 1  # a broken EXIF block is not worth refusing the pixels over


def _shrink(im: Image.Image, target: int) -> Image.Image:
    """At most about 2 x target on the shorter side, averaged (palettes and bilevel images
    sampled), so nothing later works on the full-size pixels. The shorter side, not the
    longer: a model input is a square of both sides, and a wide photograph shrunk by its width
    would be stretched back up to it in height."""
    side = min(im.size)
    if side <= 2 * target:
        return im
    k = side / target
    size = (max(1, round(im.width / k)), max(1, round(im.height / k)))
    sampling = Image.Resampling.NEAREST if im.mode in ("P", "1") else Image.Resampling.BOX
    return im.resize(size, sampling)


def preprocess(image: Image.Image, spec: dict[str, Any]) -> np.ndarray:
    """(H, W, C) float32 exactly as the bundle's `preprocessing` block says."""
    size = int(spec["size"])
    resample = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}[
        spec.get("resize", "bilinear")
    ]
    if image.mode == "F" and spec["color_mode"] == "L":  # a radiograph's bits, kept till now
        im = image.resize((size, size), resample)
    else:
        im = _eight_bit(image).convert(spec["color_mode"]).resize((size, size), resample)
    x = np.asarray(im, dtype=np.float32) * float(spec["scale"])
    return x[..., None] if x.ndim == 2 else x


def _eight_bit(image: Image.Image) -> Image.Image:
    """An F image (0 to 255) as L; any other as it is."""
    if image.mode != "F":
        return image
    return Image.fromarray(np.clip(np.asarray(image) + 0.5, 0, 255).astype(np.uint8))


def display_png(image: Image.Image, size: int) -> bytes:
    """The image as a browser shows it (a DICOM's rendition), at most `size` on a side."""
    im = _eight_bit(image)
    im.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def thumbnail_jpeg(image: Image.Image, size: int) -> bytes:
    im = _eight_bit(image).convert("RGB")
    im.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


PALETTE = [
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
]
"""Mask colours by class id (repeating past ten classes)."""


def _palette(n: int) -> list[int]:
    return [c for i in range(max(n, 1)) for c in PALETTE[i % len(PALETTE)]]


def mask_color(class_id: int) -> str:
    return "#{:02x}{:02x}{:02x}".format(*PALETTE[class_id % len(PALETTE)])


def mask_png(classes: np.ndarray, n_classes: int) -> bytes:
    """A palette PNG of the class ids: a few hundred bytes, readable by any viewer."""
    im = Image.fromarray(classes.astype(np.uint8), mode="P")
    im.putpalette(_palette(n_classes))
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def attention_png(thumb_jpeg: bytes, alpha: np.ndarray) -> bytes:
    """One word's attention grid as a heat map laid over the thumbnail."""
    base = Image.open(io.BytesIO(thumb_jpeg)).convert("RGB")
    a = np.asarray(alpha, dtype=np.float32)
    a = a / a.max() if a.max() > 0 else a
    heat = Image.fromarray((a * 255).astype(np.uint8), mode="L").resize(
        base.size, Image.Resampling.BILINEAR
    )
    h = np.asarray(heat, dtype=np.float32)[..., None] / 255.0
    red = np.array([255.0, 40.0, 0.0], dtype=np.float32)
    out = np.asarray(base, dtype=np.float32) * (1 - 0.6 * h) + red * 0.6 * h
    buf = io.BytesIO()
    Image.fromarray(out.clip(0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()
