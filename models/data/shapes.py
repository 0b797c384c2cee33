"""The `shapes` domain: 1-3 coloured shapes on noisy backgrounds, captioned with a spatial relation.

Objects sit in distinct cells of a 3x3 grid (with jitter), so every pair has one clear relation.
The canonical caption lists objects left to right (top to bottom within a column); paraphrases
reverse the relation or add a lead-in, so a caption model has several references per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from models.data.sample import Instance, Part, Sample, Span, compose

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
CATEGORIES = SHAPES
"""The instance categories (COCO `categories`) of this domain."""
CHANNELS = 3
INVERSE = {"left of": "right of", "above": "below"}


def _relation(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Relation of a to b; canonical order guarantees a is left of or above b."""
    return "left of" if b["cell"][1] != a["cell"][1] else "above"


def _name(o: dict[str, Any]) -> str:
    return f"{o['size']} {o['colour']} {o['shape']}"


def grounded_captions(objects: list[dict[str, Any]]) -> list[tuple[str, list[Span]]]:
    """Three reference captions for objects already in canonical order, each with the token
    spans that name object i (instance i): its size, colour and shape words. One caption
    reads the scene backwards, so every relation is said both ways ("above" and "below")."""
    names = [_name(o) for o in objects]
    p: list[list[Part]]
    if len(objects) == 1:
        p = [
            [("a", None), (names[0], 0)],
            [("there is a", None), (names[0], 0)],
            [("a single", None), (names[0], 0)],
        ]
        return [compose(parts) for parts in p]
    rels = [_relation(objects[i], objects[i + 1]) for i in range(len(objects) - 1)]
    if len(objects) == 2:
        p = [
            [("a", None), (names[0], 0), (f"{rels[0]} a", None), (names[1], 1)],
            [("a", None), (names[1], 1), (f"{INVERSE[rels[0]]} a", None), (names[0], 0)],
            [("there is a", None), (names[0], 0), (f"{rels[0]} a", None), (names[1], 1)],
        ]
        return [compose(parts) for parts in p]
    chain: list[Part] = [(names[0], 0), (f"{rels[0]} a", None), (names[1], 1)]
    p = [
        [("a", None), *chain, (f"{rels[1]} a", None), (names[2], 2)],
        [
            ("a", None),
            (names[2], 2),
            (f"{INVERSE[rels[1]]} a", None),
            (names[1], 1),
            (f"{INVERSE[rels[0]]} a", None),
            (names[0], 0),
        ],
        [("there is a", None), *chain, (f"{rels[1]} a", None), (names[2], 2)],
    ]
    return [compose(parts) for parts in p]


def captions_for(objects: list[dict[str, Any]]) -> list[str]:
    """The three reference captions' text."""
    return [text for text, _ in grounded_captions(objects)]


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
    instances = []
    for o in objects:
        colour = np.clip(np.array(COLOURS[o["colour"]]) + rng.normal(0, 12, size=3), 0, 255)
        _draw(d_img, o["shape"], tuple(o["bbox"]), tuple(int(v) for v in colour))
        _draw(d_mask, o["shape"], tuple(o["bbox"]), SHAPES.index(o["shape"]) + 1)
        own = Image.new("1", (size, size), 0)
        _draw(ImageDraw.Draw(own), o["shape"], tuple(o["bbox"]), 1)
        instances.append(Instance(o["shape"], np.asarray(own, dtype=bool)))
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
    grounded = grounded_captions(objects)
    return Sample(
        image,
        np.asarray(mask, dtype=np.uint8),
        meta,
        [t for t, _ in grounded],
        instances,
        [spans for _, spans in grounded],
    )
