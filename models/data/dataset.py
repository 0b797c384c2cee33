"""Data sets on disk in the COCO-captions format, written by `make-data` and read for training.

A folder holds `captions.json` (COCO captions: `images[]` with `id` and `file_name` relative to the
folder, `annotations[]` with `image_id` and `caption`), optionally `masks/<image stem>.png` (class
ids) with `masks/classes.json` (class names), and optionally `meta.json` (ground truth per
`file_name`). A user's Flickr8k/COCO-style folder needs only `captions.json` and the images.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from models.data.domains import get_domain
from models.data.instances import (
    INSTANCES_FILE,
    InstancesFormatError,
    annotation_mask,
    coverage,
    grounding_json,
    instances_doc,
    read_instances,
    spans_by_name,
)
from models.data.sample import Span

log = logging.getLogger(__name__)
CAPTIONS_FILE, META_FILE, MASKS_DIR, CLASSES_FILE = (
    "captions.json",
    "meta.json",
    "masks",
    "classes.json",
)


class DatasetFormatError(ValueError):
    """A data set folder whose files do not follow the documented format."""


@dataclass
class Dataset:
    """Images (float32 in [0, 1], NHWC) with their captions and, where present, masks and meta."""

    root: Path
    file_names: list[str]
    images: np.ndarray
    captions: list[list[str]]
    masks: np.ndarray | None = None
    class_names: list[str] | None = None
    meta: list[dict[str, Any]] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    instances: list[list[tuple[str, np.ndarray]]] | None = None
    """Per image, (category, uint8 coverage mask at the loaded size) of each instance."""
    grounding: list[list[list[Span] | None]] | None = None
    """Per image and caption, the spans naming instances; None where the file says nothing."""

    def __len__(self) -> int:
        return len(self.file_names)

    def subset(self, index: np.ndarray | list[int]) -> Dataset:
        """The same data set restricted to `index` (used for per-group metrics)."""
        idx = list(index)
        return Dataset(
            root=self.root,
            file_names=[self.file_names[i] for i in idx],
            images=self.images[idx],
            captions=[self.captions[i] for i in idx],
            masks=None if self.masks is None else self.masks[idx],
            class_names=self.class_names,
            meta=None if self.meta is None else [self.meta[i] for i in idx],
            instances=None if self.instances is None else [self.instances[i] for i in idx],
            grounding=None if self.grounding is None else [self.grounding[i] for i in idx],
        )

    def ground_by_name(self, synonyms: dict[str, list[str]]) -> None:
        """Spans for the captions that have none, from the instances' category names (and
        the config's synonyms): each such word names every instance of its category."""
        if self.instances is None:
            return
        if self.grounding is None:
            self.grounding = [[None] * len(c) for c in self.captions]
        for i, insts in enumerate(self.instances):
            cats = [c for c, _ in insts]
            for k, caption in enumerate(self.captions[i]):
                if self.grounding[i][k] is None:
                    self.grounding[i][k] = [
                        Span(a, b, tuple(j for j, c in enumerate(cats) if c == cat))
                        for a, b, cat in spans_by_name(caption, cats, synonyms)
                    ]


def write_dataset(domain: str, n: int, seed: int, out: Path, size: int = 64) -> Path:
    """Generate `n` examples of `domain` from `seed` into `out` (created; must not exist yet).

    Written to a temporary sibling folder and renamed at the end, so an interrupted run never
    leaves a folder that looks complete.
    """
    gen = get_domain(domain)
    with new_folder(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / MASKS_DIR).mkdir()
        rng = np.random.default_rng(seed)
        images, annotations, metas, samples = [], [], {}, []
        for i in tqdm(range(n), desc=f"make-data {domain}", unit="img", leave=False):
            sample = gen.generate(rng, size)
            name = f"images/{i:06d}.png"
            mode = "RGB" if sample.image.ndim == 3 else "L"
            Image.fromarray(sample.image, mode).save(tmp / name, optimize=False)
            Image.fromarray(sample.mask, "L").save(tmp / MASKS_DIR / f"{i:06d}.png")
            images.append({"id": i, "file_name": name, "width": size, "height": size})
            samples.append(sample)
            metas[name] = sample.meta
        inst_doc, ann_ids = instances_doc(images, [s.instances for s in samples], gen.CATEGORIES)
        for i, sample in enumerate(samples):
            for caption, spans in zip(sample.captions, sample.grounding, strict=True):
                annotations.append(
                    {
                        "id": len(annotations),
                        "image_id": i,
                        "caption": caption,
                        "grounding": grounding_json(spans, ann_ids[i]),
                    }
                )
        notice = getattr(
            gen, "SYNTHETIC_NOTICE", f"synthetic {domain} scenes generated by s3e-train"
        )
        info = {"description": notice, "domain": domain, "seed": seed, "n": n, "size": size}
        (tmp / CAPTIONS_FILE).write_text(
            json.dumps({"info": info, "images": images, "annotations": annotations}, indent=1)
        )
        (tmp / MASKS_DIR / CLASSES_FILE).write_text(json.dumps(list(gen.CLASS_NAMES)))
        (tmp / INSTANCES_FILE).write_text(json.dumps({"info": info, **inst_doc}))
        (tmp / META_FILE).write_text(
            json.dumps({"synthetic": notice, **info, "images": metas}, indent=1)
        )
    return Path(out)


@contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling of the new folder `out` to write into, renamed to `out` when the
    block ends (removed if it fails): an interrupted run never leaves a folder that looks
    complete."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _require(obj: Any, key: str, where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DatasetFormatError(f"{path}: {where} is missing the key {key!r}")
    return obj[key]


Grounding = list[dict[str, Any]] | None


def read_captions(
    path: Path,
) -> tuple[list[dict[str, Any]], dict[int, list[str]], dict[int, list[Grounding]]]:
    """Validated `images`, captions per image id, and each caption's `grounding` (or None)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetFormatError(
            f"{path}: no captions file (expected COCO captions JSON)"
        ) from None
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path}: not valid JSON ({e})") from None
    images = _require(doc, "images", "the top level", path)
    annotations = _require(doc, "annotations", "the top level", path)
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise DatasetFormatError(f"{path}: 'images' and 'annotations' must be lists")
    for k, im in enumerate(images):
        _require(im, "id", f"images[{k}]", path)
        _require(im, "file_name", f"images[{k}]", path)
    captions: dict[int, list[str]] = {im["id"]: [] for im in images}
    groundings: dict[int, list[Grounding]] = {im["id"]: [] for im in images}
    for k, ann in enumerate(annotations):
        image_id = _require(ann, "image_id", f"annotations[{k}]", path)
        caption = _require(ann, "caption", f"annotations[{k}]", path)
        if image_id not in captions:
            raise DatasetFormatError(f"{path}: annotations[{k}] names unknown image_id {image_id}")
        captions[image_id].append(str(caption))
        grounding = ann.get("grounding")
        if grounding is not None and not isinstance(grounding, list):
            raise DatasetFormatError(f"{path}: annotations[{k}].grounding must be a list")
        groundings[image_id].append(grounding)
    return images, captions, groundings


def _image_instances(
    anns: list[dict[str, Any]], names: dict[int, str], size: int, shape: tuple[int, int]
) -> tuple[list[tuple[str, np.ndarray]], dict[int, int]]:
    """(category, coverage) of an image's instances, and annotation id -> index among them."""
    out, index = [], {}
    for a in anns:
        index[a["id"]] = len(out)
        out.append((names[a["category_id"]], coverage(annotation_mask(a, *shape), size)))
    return out, index


def _spans(doc: Grounding, index: dict[int, int], where: str) -> list[Span] | None:
    if doc is None:
        return None
    try:
        return [
            Span(int(g["start"]), int(g["end"]), tuple(index[a] for a in g["annotation_ids"]))
            for g in doc
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetFormatError(f"{where}: bad grounding entry ({e!r})") from None


def _load_image(path: Path, size: int, channels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as float32 (size, size, channels) in [0, 1], and its own (height, width)."""
    with Image.open(path) as im:
        shape = (im.height, im.width)
        im = im.convert("RGB" if channels == 3 else "L")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return (arr if channels == 3 else arr[..., None]), shape


def load_dataset(
    root: Path, size: int, channels: int, limit: int | None = None, progress: bool = False
) -> Dataset:
    """Read a data set folder; unreadable images are reported by name, skipped and counted."""
    root = Path(root)
    images, captions, groundings = read_captions(root / CAPTIONS_FILE)
    if limit is not None:
        images = images[:limit]
    meta_doc = None
    if (root / META_FILE).exists():
        meta_doc = json.loads((root / META_FILE).read_text()).get("images")
    inst_by_image: dict[int, list[dict[str, Any]]] | None = None
    if (root / INSTANCES_FILE).exists():
        try:
            inst_by_image, cat_names = read_instances(
                json.loads((root / INSTANCES_FILE).read_text()), root / INSTANCES_FILE
            )
        except (json.JSONDecodeError, InstancesFormatError) as e:
            raise DatasetFormatError(f"{root / INSTANCES_FILE}: {e}") from None
    mask_dir = root / MASKS_DIR
    has_masks = mask_dir.is_dir()

    names, arrays, caps, masks, metas, skipped = [], [], [], [], [], []
    insts: list[list[tuple[str, np.ndarray]]] = []
    grounds: list[list[list[Span] | None]] = []
    for im in tqdm(images, desc=f"load {root.name}", unit="img", leave=False, disable=not progress):
        name = str(im["file_name"])
        try:
            arr, shape = _load_image(root / name, size, channels)
            mask = None
            if has_masks:
                with Image.open(mask_dir / f"{Path(name).stem}.png") as m:
                    if m.size != (size, size):
                        m = m.resize((size, size), Image.Resampling.NEAREST)
                    mask = np.asarray(m, dtype=np.uint8)
            if inst_by_image is not None:
                found, index = _image_instances(
                    inst_by_image.get(im["id"], []), cat_names, size, shape
                )
                spans = [
                    _spans(g, index, f"{root / CAPTIONS_FILE}: image {im['id']}")
                    for g in groundings[im["id"]]
                ]
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            if isinstance(e, DatasetFormatError):
                raise
            log.warning("skipping %s: %s", root / name, e)
            skipped.append((name, str(e)))
            continue
        names.append(name)
        arrays.append(arr)
        caps.append(captions[im["id"]])
        masks.append(mask)
        if meta_doc is not None:
            metas.append(meta_doc.get(name, {}))
        if inst_by_image is not None:
            insts.append(found)
            grounds.append(spans)
    if skipped:
        log.warning(
            "skipped %d of %d images in %s (unreadable or corrupt)", len(skipped), len(images), root
        )
    if not names:
        raise DatasetFormatError(f"{root}: no readable images")
    class_names = None
    if has_masks and (mask_dir / CLASSES_FILE).exists():
        class_names = list(json.loads((mask_dir / CLASSES_FILE).read_text()))
    return Dataset(
        root=root,
        file_names=names,
        images=np.stack(arrays),
        captions=caps,
        masks=np.stack(masks) if has_masks else None,
        class_names=class_names,
        meta=metas if meta_doc is not None else None,
        skipped=skipped,
        instances=insts if inst_by_image is not None else None,
        grounding=grounds if inst_by_image is not None else None,
    )
