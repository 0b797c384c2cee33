"""COCO `instances` annotations: where each located thing is, and which caption words name it.

`instances.json` beside `captions.json` follows COCO's instances format: `categories` with
`id` and `name`; `annotations` with `image_id`, `category_id`, `bbox` [x, y, w, h] and a
`segmentation` as uncompressed RLE (`{"size": [h, w], "counts": [...]}`, column-major, zeros
first) or polygons; with no segmentation the box is the region. A caption annotation in
`captions.json` may carry `grounding`: `[{"start", "end", "annotation_ids"}]`, token spans
(as `tokenize` splits the caption, end exclusive) and the instances they name. Without it,
caption words equal to a category's name (or a synonym the config lists) name every instance
of that category in the image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from core.tokens import tokenize
from models.data.sample import Instance, Span

INSTANCES_FILE = "instances.json"


class InstancesFormatError(ValueError):
    """An instances file that does not follow COCO's format; the message names the key."""


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of a bool (H, W) mask: run lengths in column-major order."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if not isinstance(counts, list):
        raise InstancesFormatError("compressed RLE strings are not read; use uncompressed counts")
    flat = np.zeros(h * w, dtype=bool)
    pos, value = 0, False
    for n in counts:
        if value:
            flat[pos : pos + int(n)] = True
        pos += int(n)
        value = not value
    return flat.reshape((h, w), order="F")


def bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0, 0, 0, 0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def annotation_mask(ann: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The bool mask of one annotation at the image's own size."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        return rle_decode(seg)
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if isinstance(seg, list) and seg:
        for poly in seg:
            draw.polygon([(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly), 2)], 1)
    elif "bbox" in ann:
        x, y, w, h = (float(v) for v in ann["bbox"])
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=1)
    else:
        raise InstancesFormatError(f"annotation {ann.get('id')} has no segmentation nor bbox")
    return np.asarray(canvas, dtype=bool)


def instances_doc(
    images: list[dict[str, Any]], per_image: list[list[Instance]], categories: Sequence[str]
) -> tuple[dict[str, Any], list[list[int]]]:
    """The instances.json document and, per image, the annotation id of each instance."""
    cat_id = {name: i + 1 for i, name in enumerate(categories)}
    anns, ids = [], []
    for im, instances in zip(images, per_image, strict=True):
        mine = []
        for inst in instances:
            mine.append(len(anns) + 1)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": cat_id[inst.category],
                    "bbox": bbox(inst.mask),
                    "area": int(inst.mask.sum()),
                    "iscrowd": 0,
                    "segmentation": rle_encode(inst.mask),
                }
            )
        ids.append(mine)
    cats = [{"id": i, "name": n, "supercategory": n} for n, i in cat_id.items()]
    return {"images": images, "annotations": anns, "categories": cats}, ids


def grounding_json(spans: Iterable[Span], ann_ids: list[int]) -> list[dict[str, Any]]:
    return [
        {"start": s.start, "end": s.end, "annotation_ids": [ann_ids[i] for i in s.instances]}
        for s in spans
    ]


def read_instances(doc: Any, path: Path) -> tuple[dict[int, list[dict[str, Any]]], dict[int, str]]:
    """Annotations by image id and category names by id, validated."""
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise InstancesFormatError(f"{path}: the top level is missing the key 'annotations'")
    if not isinstance(doc.get("categories"), list):
        raise InstancesFormatError(f"{path}: the top level is missing the key 'categories'")
    names: dict[int, str] = {}
    for k, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise InstancesFormatError(f"{path}: categories[{k}] needs 'id' and 'name'")
        names[c["id"]] = str(c["name"])
    by_image: dict[int, list[dict[str, Any]]] = {}
    for k, a in enumerate(doc["annotations"]):
        for key in ("id", "image_id", "category_id"):
            if not isinstance(a, dict) or key not in a:
                raise InstancesFormatError(f"{path}: annotations[{k}] is missing the key {key!r}")
        if a["category_id"] not in names:
            raise InstancesFormatError(
                f"{path}: annotations[{k}] names unknown category_id {a['category_id']}"
            )
        by_image.setdefault(a["image_id"], []).append(a)
    return by_image, names


def coverage(mask: np.ndarray, size: int) -> np.ndarray:
    """A bool mask resized to size x size as the share of each pixel it covers (uint8 0..255)."""
    im = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, "L")
    return np.asarray(im.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def spans_by_name(
    caption: str, categories: Sequence[str], synonyms: dict[str, list[str]]
) -> list[tuple[int, int, str]]:
    """(start, end, category) of the caption's words that name a category: its name, its
    plural, or a synonym from the config; longer names first, no overlaps."""
    tokens = tokenize(caption)
    names: list[tuple[list[str], str]] = []
    for cat in set(categories):
        for phrase in (cat, f"{cat}s", *synonyms.get(cat, [])):
            if tokenize(phrase):
                names.append((tokenize(phrase), cat))
    names.sort(key=lambda n: -len(n[0]))
    taken = [False] * len(tokens)
    out = []
    for words, cat in names:
        n = len(words)
        for i in range(len(tokens) - n + 1):
            if tokens[i : i + n] == words and not any(taken[i : i + n]):
                taken[i : i + n] = [True] * n
                out.append((i, i + n, cat))
    return sorted(out)


def grid_regions(masks: np.ndarray, grid: int) -> np.ndarray:
    """(K, size, size) uint8 coverage -> (K, grid*grid) float share of each cell covered."""
    k, size, _ = masks.shape
    cell = size // grid
    x = masks.reshape(k, grid, cell, grid, cell).astype(np.float32) / 255.0
    return x.mean(axis=(2, 4)).reshape(k, grid * grid)
