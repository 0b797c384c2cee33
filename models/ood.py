"""Images that are not of a domain, to measure out-of-domain abstention: the photographs and
textures scikit-image ships, generated textures and noise, and the other domain's images; and
a second set, `unseen`, that the domain model's signals are not chosen against, so that one
check is on strangers nobody tuned against (crops and rotated negatives of the photographs,
smooth noise, scribbles, text, discs on noise, gratings).

Each is an upright uint8 array (grey or RGB) at its own size; the caller resizes it the way
the device does.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

from models.data.domains import DOMAINS, get_domain

PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "coins",
    "moon",
    "page",
    "text",
    "rocket",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "brick",
    "grass",
    "gravel",
    "clock",
    "cell",
    "colorwheel",
    "logo",
    "microaneurysms",
    "checkerboard",
    "binary_blobs",
    "shepp_logan_phantom",
)
"""scikit-image's data images that ship in its wheel (no download)."""


def photos() -> Iterator[tuple[str, np.ndarray]]:
    try:
        from skimage import data
    except ImportError as e:
        raise RuntimeError(
            f"the photographs need scikit-image ({e}): pip install scikit-image"
        ) from None
    for name in PHOTOS:
        im = np.asarray(getattr(data, name)())
        if im.dtype != np.uint8:
            im = (255 * (im.astype(np.float64) / max(float(im.max()), 1e-9))).astype(np.uint8)
        yield f"skimage:{name}", im[..., :3] if im.ndim == 3 else im


def textures(seed: int = 0, size: int = 128) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    yield "uniform noise", rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    yield "gaussian noise", np.clip(rng.normal(128, 50, (size, size)), 0, 255).astype(np.uint8)
    sp = np.full((size, size), 128, np.uint8)
    sp[rng.random((size, size)) < 0.1] = 0
    sp[rng.random((size, size)) < 0.1] = 255
    yield "salt and pepper", sp
    yield "stripes", ((xx // 8) % 2 * 255).astype(np.uint8)
    yield "fine checkerboard", (((xx // 4) + (yy // 4)) % 2 * 255).astype(np.uint8)
    coarse = rng.random((8, 8, 3))
    smooth = np.kron(coarse, np.ones((size // 8, size // 8, 1)))
    yield "blocky colour noise", (smooth * 255).astype(np.uint8)
    yield "diagonal gradient", ((xx + yy) * 255 / (2 * size - 2)).astype(np.uint8)
    yield "rings", ((np.sin(np.hypot(xx - size / 2, yy - size / 2) / 3) + 1) * 127).astype(np.uint8)
    yield "black", np.zeros((size, size), np.uint8)
    yield "white", np.full((size, size), 255, np.uint8)


def other_domains(domain: str, n: int = 20, seed: int = 9090) -> Iterator[tuple[str, np.ndarray]]:
    """`n` images of every generated domain but `domain`."""
    for other in sorted(set(DOMAINS) - {domain}):
        rng = np.random.default_rng(seed)
        gen = get_domain(other)
        for i in range(n):
            yield f"{other}:{i}", gen.generate(rng, 64).image


def unseen(seed: int = 4242, size: int = 128) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    for name, im in photos():
        s = min(im.shape[:2]) // 2
        y, x = (int(rng.integers(0, d - s + 1)) for d in im.shape[:2])
        yield f"crop of {name}", im[y : y + s, x : x + s]
        yield f"rotated negative of {name}", 255 - np.rot90(im)
    for k in range(6):
        coarse = (rng.random((4 + 2 * k, 4 + 2 * k)) * 255).astype(np.uint8)
        smooth = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        yield f"smooth noise {k}", np.asarray(smooth)
    for k in range(4):
        yield f"scribbles {k}", _drawn(rng, size, "lines")
        yield f"text {k}", _drawn(rng, size, "text")
        yield f"discs on noise {k}", _drawn(rng, size, "discs")
    yy, xx = np.mgrid[0:size, 0:size]
    for k in range(3):
        yield (
            f"grating {k}",
            ((np.sin(xx * (0.2 + 0.3 * k) + yy * 0.1 * k) + 1) * 127).astype(np.uint8),
        )


def _drawn(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    def ints(n: int, high: int = 256, low: int = 0) -> list[int]:
        return [int(v) for v in rng.integers(low, high, n)]

    if kind == "discs":
        im = Image.fromarray(rng.integers(0, 256, (size, size, 3)).astype(np.uint8))
    else:
        im = Image.new("RGB", (size, size), (255, 255, 255) if kind == "text" else tuple(ints(3)))
    draw = ImageDraw.Draw(im)
    for k in range({"lines": 30, "text": 8, "discs": 3}[kind]):
        if kind == "lines":
            draw.line(
                [tuple(ints(2, size)), tuple(ints(2, size))],
                fill=tuple(ints(3)),
                width=ints(1, 4, 1)[0],
            )
        elif kind == "text":
            draw.text((4, 4 + 15 * k), "".join(chr(c) for c in ints(18, 123, 97)), fill=(0, 0, 0))
        else:
            x, y, r = *ints(2, 90, 10), ints(1, 30, 10)[0]
            draw.ellipse([x, y, x + r, y + r], fill=tuple(ints(3)))
    return np.asarray(im)


def ood_images(domain: str) -> list[tuple[str, np.ndarray]]:
    """Every out-of-domain test image for a bundle of `domain` (at least 20)."""
    return [*photos(), *textures(), *other_domains(domain), *unseen()]
