"""The `shapes` domain: 1-3 coloured shapes on noisy backgrounds, captioned with a spatial relation.

Objects sit in distinct cells of a 3x3 grid (with jitter), so every pair has one clear relation.
The canonical caption lists objects left to right (top to bottom within a column); paraphrases
reverse the relation or add a lead-in, so a caption model has several references per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from models.data.sample import Sample

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 235),
    "yellow": (235, 215, 40),
    "purple": (160, 60, 210),
}
SIZES = {"small": (9, 11), "large": (16, 19)}
CLASS_NAMES = ("background", *SHAPES)
CHANNELS = 3
INVERSE = {"left of": "right of", "above": "below"}


def _relation(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Relation of a to b; canonical order guarantees a is left of or above b."""
    return "left of" if b["cell"][1] != a["cell"][1] else "above"


def _name(o: dict[str, Any]) -> str:
    return f"{o['size']} {o['colour']} {o['shape']}"


def captions_for(objects: list[dict[str, Any]]) -> list[str]:
    """Three reference captions for objects already in canonical order."""
    names = [_name(o) for o in objects]
    if len(objects) == 1:
        return [f"a {names[0]}", f"there is a {names[0]}", f"a single {names[0]}"]
    rels = [_relation(objects[i], objects[i + 1]) for i in range(len(objects) - 1)]
    if len(objects) == 2:
        return [
            f"a {names[0]} {rels[0]} a {names[1]}",
            f"a {names[1]} {INVERSE[rels[0]]} a {names[0]}",
            f"there is a {names[0]} {rels[0]} a {names[1]}",
        ]
    return [
        f"a {names[0]} {rels[0]} a {names[1]} {rels[1]} a {names[2]}",
        f"a {names[0]} {rels[0]} a {names[1]} and a {names[2]} "
        f"{INVERSE[rels[1]]} the {objects[1]['shape']}",
        f"there is a {names[0]} {rels[0]} a {names[1]} {rels[1]} a {names[2]}",
    ]


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: Any) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)


def generate(rng: np.random.Generator, size: int = 64) -> Sample:
    """One scene: RGB image, class-id mask, ground truth and three reference captions."""
    n = int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4]))
    cells = [(int(c) // 3, int(c) % 3) for c in rng.choice(9, size=n, replace=False)]
    cell = size / 3
    objects = []
    for r, c in cells:
        s = str(rng.choice(list(SIZES)))
        lo, hi = SIZES[s]
        w = int(rng.integers(lo, hi + 1))
        slack = max(cell - w, 0)
        x0 = int(c * cell + rng.uniform(0, slack))
        y0 = int(r * cell + rng.uniform(0, slack))
        objects.append(
            {
                "shape": str(rng.choice(SHAPES)),
                "colour": str(rng.choice(list(COLOURS))),
                "size": s,
                "cell": [r, c],
                "bbox": [x0, y0, x0 + w - 1, y0 + w - 1],
            }
        )
    objects.sort(key=lambda o: (o["cell"][1], o["cell"][0]))

    base = rng.uniform(50, 150)
    tint = rng.normal(0, 12, size=3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None] * rng.uniform(-40, 40)
    bg = base + tint + gradient
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    mask = Image.new("L", (size, size), 0)
    d_img, d_mask = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    for o in objects:
        colour = np.clip(np.array(COLOURS[o["colour"]]) + rng.normal(0, 12, size=3), 0, 255)
        _draw(d_img, o["shape"], tuple(o["bbox"]), tuple(int(v) for v in colour))
        _draw(d_mask, o["shape"], tuple(o["bbox"]), SHAPES.index(o["shape"]) + 1)
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(3, 10), (size, size, 3))
    image = np.clip(pixels, 0, 255).astype(np.uint8)

    areas: dict[str, int] = {}
    for o in objects:
        x0, y0, x1, y1 = o["bbox"]
        areas[o["colour"]] = areas.get(o["colour"], 0) + (x1 - x0 + 1) * (y1 - y0 + 1)
    meta = {
        "objects": objects,
        "n_objects": n,
        "labels": sorted({o["colour"] for o in objects} | {o["shape"] for o in objects}),
        "primary_label": max(sorted(areas), key=lambda k: areas[k]),
    }
    return Sample(image, np.asarray(mask, dtype=np.uint8), meta, captions_for(objects))
