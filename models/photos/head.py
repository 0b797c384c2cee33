"""Labels of your own for the photos bundle: a small head on the pretrained classifier, fitted
on a folder of class sub-folders (`s3e-train fit-photos`), written into a copy of the bundle.

The head reads the classifier's 1000 logits, standardised, and gives one probability per
class of yours (multinomial logistic regression with an L2 penalty, fitted by full-batch
gradient descent in numpy: no TensorFlow, a few seconds for a few hundred photographs). It is
linear in the logits, and the logits are the mean over the last feature map's cells of the
class activation maps, so the same head applied to each cell's activations gives each class of
yours its heat-map for free. The images go through the device's own pipeline (decode,
preprocess, the bundle's TFLite classifier), each also mirrored, so the head learns from what
the device will see.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge.analysis.bundle import BUNDLE_FILE, Bundle, load_bundle, sha256_file
from edge.analysis.models import BundleModels
from edge.analysis.outputs.classify import UserHead
from edge.config import parse_config
from edge.ingest.imaging import ImageRejectedError, decode, preprocess
from models.data.dataset import DatasetFormatError

log = logging.getLogger(__name__)
HEAD_FILE = "user_head.json"
MIN_PER_CLASS = 2
MIN_SCORE = 0.6
"""A class of yours labels a photograph from this probability (and within its reach)."""
REACH_QUANTILE, REACH_MARGIN, REACH_CAP = 0.1, 0.05, 0.5


class FolderError(DatasetFormatError):
    """A training folder that cannot train a head (the message says what to change)."""


def class_folders(root: Path) -> dict[str, list[Path]]:
    """Each sub-folder of `root` a class (its name, lower-cased, the label), its files the
    images; hidden entries skipped."""
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder (give a folder of class sub-folders)")
    out = {
        d.name.strip().lower(): sorted(
            p for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        for d in sorted(root.iterdir(), key=lambda d: d.name.lower())
        if d.is_dir() and not d.name.startswith(".")
    }
    few = ", ".join(f"{c} ({len(ps)})" for c, ps in out.items() if len(ps) < MIN_PER_CLASS)
    if len(out) < 2 or few:
        raise FolderError(
            f"{root}: needs at least 2 class sub-folders of at least {MIN_PER_CLASS} images "
            f"each; has {len(out)} class(es)" + (f", too few images in {few}" if few else "")
        )
    return out


def logits_of(bundle: Bundle, models: BundleModels, paths: list[Path]) -> list[np.ndarray]:
    """Each readable image's logits, as the device computes them, and its mirror's (2, 1000);
    an unreadable file is skipped with a warning."""
    spec, lim = bundle.doc.preprocessing.model_dump(), parse_config({}, "defaults").limits
    out = []
    for p in tqdm(paths, desc="photos", unit="img"):
        try:
            img = decode(p.read_bytes(), lim.max_pixels, lim.max_side, spec["size"]).image
        except ImageRejectedError as e:
            log.warning("%s: skipped (%s)", p, e.reason)
            continue
        x = preprocess(img.convert("RGB"), spec)
        both = np.stack([x, x[:, ::-1]]).astype(np.float32)
        out.append(
            np.stack([models.runners["classifier"](image=b[None])["logits"][0] for b in both])
        )
    return out


def fit_head(
    x: np.ndarray, y: np.ndarray, classes: list[str], l2: float = 1e-2, steps: int = 1000
) -> dict[str, Any]:
    """Softmax regression of `y` (class indices) on standardised logits `x` (n, 1000), by
    gradient descent at the step its loss's curvature allows (1 / its Lipschitz bound)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    k, n = len(classes), len(z)
    w, b = np.zeros((k, z.shape[1])), np.zeros(k)
    onehot = np.eye(k)[y]
    lr = 1 / (0.5 * np.linalg.norm(z, 2) ** 2 / n + 0.5 + l2)
    for _ in range(steps):
        s = z @ w.T + b
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (g.T @ z + l2 * w)
        b -= lr * g.sum(axis=0)
    doc = {"classes": classes, "mean": mean.tolist(), "std": std.tolist()}
    doc |= {"weights": w.tolist(), "bias": b.tolist(), "min_score": MIN_SCORE}
    doc |= dict(zip(("centroids", "min_similarity"), reach(z, y, k), strict=True))
    UserHead(doc)  # the device's reader takes it
    return doc


def reach(z: np.ndarray, y: np.ndarray, k: int) -> tuple[list[list[float]], list[float]]:
    """Each class's centroid of the standardised logits (unit length) and how near to it a
    photograph must be to take the class: its own photographs' REACH_QUANTILE similarity,
    less REACH_MARGIN, and never more than REACH_CAP (a few near-identical photographs would
    admit only themselves). The head alone is closed-set: a rocket would be most like a
    motorcycle of yours, and surely so."""
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    centroids, floors = [], []
    for c in range(k):
        mine = unit[y == c]
        centre = mine.mean(axis=0)
        centre /= np.linalg.norm(centre)
        centroids.append(centre.tolist())
        floor = float(np.quantile(mine @ centre, REACH_QUANTILE)) - REACH_MARGIN
        floors.append(min(floor, REACH_CAP))
    return centroids, floors


def train(data: Path, base: str, l2: float = 1e-2) -> tuple[dict[str, Any], dict[str, int]]:
    """The head for `data`'s classes on `base`'s classifier, and the images used per class."""
    folders = class_folders(data)
    bundle = load_bundle(base)
    if "classifier" not in bundle.doc.models:
        raise FolderError(f"{base}: has no classifier to fit a head on (use a photos bundle)")
    models = BundleModels(bundle, threads=2)
    xs, ys, used = [], [], {}
    for k, (name, paths) in enumerate(folders.items()):
        got = logits_of(bundle, models, paths)
        used[name] = len(got)
        xs += got
        ys += [k] * (2 * len(got))
    if min(used.values()) < MIN_PER_CLASS:
        raise FolderError(f"{data}: too few readable images in a class ({used})")
    x = np.concatenate(xs).astype(np.float64)
    return fit_head(x, np.asarray(ys), list(folders), l2), used


def write_bundle(base: str, head: dict[str, Any], out: Path, name: str) -> Path:
    """A copy of `base` with the head as its `user_head` asset, named `name`: a bundle the
    daemon swaps in live (`POST /admin/bundle`) or starts with (`--catch-all`)."""
    src = load_bundle(base)
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or give another --out")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        work = Path(tmp) / "bundle"
        shutil.copytree(src.root, work)
        (work / HEAD_FILE).write_text(json.dumps(head) + "\n")
        doc = json.loads((work / BUNDLE_FILE).read_text())
        doc["name"] = name
        doc["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        doc["assets"]["user_head"] = {"file": HEAD_FILE, "sha256": sha256_file(work / HEAD_FILE)}
        doc["outputs"]["classify"]["assets"].append("user_head")
        (work / BUNDLE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
        load_bundle(work)  # the daemon's reader takes it
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(work), out)
    return out
