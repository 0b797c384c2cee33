"""Images in and out: decoding with its failure kinds, preprocessing as the bundle says,
thumbnails, class masks and attention heat maps as PNG.

Decoding is where bad input is caught, so every failure becomes an `ImageRejectedError` with a kind
that `/metrics` counts and a reason a person can read in the `rejected/` folder.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EXTENSIONS = {
    "JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp"
}  # fmt: skip
# What HTTP and S3 are told an original is, by its extension.
MEDIA_TYPES = {
    "jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp",
    "tif": "image/tiff", "webp": "image/webp",
}  # fmt: skip


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


@dataclass
class Decoded:
    """An upright RGB or L image and what was learnt decoding it."""

    image: Image.Image
    format: str
    ext: str
    width: int
    height: int


def decode(data: bytes, max_pixels: int) -> Decoded:
    """Decode fully (so truncation is caught now), refusing oversize images before any pixel is
    read, and turn it upright by its EXIF orientation."""
    if not data:
        raise ImageRejectedError("empty", "zero-byte file")
    fmt = "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageRejectedError(
                    "too_large", f"{w}x{h} = {w * h} pixels is over the limit of {max_pixels}"
                )
            fmt = im.format or fmt
            im.load()
    except ImageRejectedError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageRejectedError("too_large", f"decompression bomb refused ({e})") from None
    except UnidentifiedImageError:
        raise ImageRejectedError("not_an_image", "not an image in any known format") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageRejectedError("corrupt", f"cannot decode {fmt} data ({e})") from None
    if fmt not in EXTENSIONS:
        raise ImageRejectedError("unsupported", f"image format {fmt} is not accepted")
    try:
        upright = ImageOps.exif_transpose(im)
    except (OSError, ValueError, SyntaxError):
        upright = im  # a broken EXIF block is not worth refusing the pixels over
    return Decoded(_to_8bit(upright), fmt, EXTENSIONS[fmt], upright.width, upright.height)


def _to_8bit(im: Image.Image) -> Image.Image:
    """RGB or L. 16-bit and float greyscale (radiographs often are) is scaled, not clipped."""
    if im.mode in ("RGB", "L"):
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        x = np.asarray(im, dtype=np.float32)
        top = 65535.0 if im.mode.startswith("I;16") else max(float(x.max()), 1.0)
        return Image.fromarray((x / top * 255).clip(0, 255).astype(np.uint8), mode="L")
    return im.convert("RGB")


def preprocess(image: Image.Image, spec: dict[str, Any]) -> np.ndarray:
    """(H, W, C) float32 exactly as the bundle's `preprocessing` block says."""
    size = int(spec["size"])
    resample = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}[
        spec.get("resize", "bilinear")
    ]
    im = image.convert(spec["color_mode"]).resize((size, size), resample)
    x = np.asarray(im, dtype=np.float32) * float(spec["scale"])
    return x[..., None] if x.ndim == 2 else x


def thumbnail_jpeg(image: Image.Image, size: int) -> bytes:
    im = image.convert("RGB")
    im.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def _palette(n: int) -> list[int]:
    base = [
        (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
        (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
    ]  # fmt: skip
    return [c for i in range(max(n, 1)) for c in base[i % len(base)]]


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
