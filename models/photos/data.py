"""Real photographs as a data set folder, for calibrating and checking a photos bundle.

The photographs come from the registry assets (`models.pretrained.assets`), each with a caption
a person wrote for it (here, by hand, in the words a person would search with). A set of `n`
images is made of random crops of them (a half to all of each side, mirrored at random,
brightness within 20%), squashed to `size` as the device's preprocessing does: the int8
converter calibrates on what the device will see, and its faithfulness check compares Keras
and the device on other crops (another seed). Such crops are no test of the labels' quality
on new photographs: that takes photographs no one tuned on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from models.data.dataset import CAPTIONS_FILE, new_folder
from models.pretrained.assets import fetch

CAPTIONS = {
    "skimage_photos": {
        "chelsea.png": "a tabby cat",
        "coffee.png": "a cup of coffee on a saucer",
        "rocket.jpg": "a rocket on its launch pad",
        "astronaut.png": "an astronaut in front of a flag",
    },
}
"""Asset -> photograph -> its caption."""


def photographs(cache: Path | None = None) -> dict[Path, str]:
    """Every captioned photograph, fetched, with its caption."""
    out = {}
    for asset, captions in CAPTIONS.items():
        files = fetch(asset, cache)
        out.update({files[name]: caption for name, caption in captions.items()})
    return out


def crop(im: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """A random crop (a half to all of each side), maybe mirrored, brightness within 20%."""
    w, h = im.size
    cw, ch = (int(rng.uniform(0.5, 1.0) * s) for s in (w, h))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = im.crop((left, top, left + cw, top + ch)).resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = np.asarray(out, np.float32) * rng.uniform(0.8, 1.2)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def write_photo_set(out: Path, n: int, seed: int, size: int, cache: Path | None = None) -> Path:
    """`n` crops of the captioned photographs (each in turn) into the new folder `out`."""
    with new_folder(out) as tmp:
        (tmp / "images").mkdir()
        rng = np.random.default_rng(seed)
        photos = list(photographs(cache).items())
        images, annotations = [], []
        for i in range(n):
            path, caption = photos[i % len(photos)]
            with Image.open(path) as im:
                picture = crop(im.convert("RGB"), rng, size)
            name = f"images/{i:06d}.png"
            picture.save(tmp / name)
            images.append({"id": i, "file_name": name, "width": size, "height": size})
            annotations.append({"id": i, "image_id": i, "caption": caption})
        info = {"description": f"crops of real photographs, seed {seed}", "n": n, "size": size}
        doc = {"info": info, "images": images, "annotations": annotations}
        (tmp / CAPTIONS_FILE).write_text(json.dumps(doc, indent=1))
    return Path(out)
