"""The VAE's latent space without TensorFlow: named clusters, anomaly calibration, neighbours.

Fitted after training on the training latents: k-means clusters named from the ground truth of
their members (labels), and the distribution of reconstruction errors (anomaly calibration).
Plain numpy and JSON, shared by evaluation and the device.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LATENT_FILE = "vae_latent.json"


def reconstruction_error(images: np.ndarray, recon: np.ndarray, pool: int = 4) -> np.ndarray:
    """Per image: the largest absolute residual after `pool` x `pool` average pooling.

    Pooling averages away pixel noise, which the VAE cannot and should not reproduce; the
    maximum keeps a small unexplained structure (a nodule, a patch of consolidation) from being
    diluted by the rest of the image. On the chest phantoms this lifts anomaly AUROC from 0.67
    (plain MSE) to about 0.9.
    """
    n, h, w, c = images.shape
    residual = (images - recon).reshape(n, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4))
    return np.abs(residual).reshape(n, -1).max(axis=1)


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each row of x."""
    return np.argmin(((x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Centroids by k-means++ seeding and Lloyd iterations."""
    rng = np.random.default_rng(seed)
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min(((x[:, None] - np.array(centroids)[None]) ** 2).sum(-1), axis=1)
        centroids.append(x[rng.choice(len(x), p=d / d.sum())])
    c = np.array(centroids)
    for _ in range(iters):
        assign = nearest(x, c)
        new = np.array([x[assign == j].mean(0) if np.any(assign == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def _name(labels: list[str], assign: np.ndarray, j: int) -> str:
    """The label that most distinguishes cluster j: the largest lift over its base rate among
    labels held by at least a quarter of the members, else the majority label.

    Plain majority would name every cluster after the most common class (every chest cluster
    "normal"), which labels nothing."""
    members = Counter(labels[i] for i in np.flatnonzero(assign == j))
    if not members:
        return f"cluster-{j}"
    size, base = sum(members.values()), Counter(labels)
    candidates = {
        lab: (n / size) / (base[lab] / len(labels)) for lab, n in members.items() if n >= size / 4
    }
    if not candidates:
        return members.most_common(1)[0][0]
    return max(sorted(candidates), key=lambda lab: candidates[lab])


@dataclass
class LatentSpace:
    """Cluster centroids with names, and the reconstruction-error calibration."""

    centroids: list[list[float]]
    names: list[str]
    purity: float | None
    error_quantiles: list[float]
    """Reconstruction error at the 0th, 1st, ..., 100th percentile of the calibration images."""
    threshold: float
    percentile: float

    @classmethod
    def fit(
        cls,
        latents: np.ndarray,
        labels: list[str] | None,
        errors: np.ndarray,
        k: int,
        percentile: float,
    ) -> LatentSpace:
        centroids = kmeans(latents, k)
        assign = nearest(latents, centroids)
        names = [_name(labels, assign, j) if labels else f"cluster-{j}" for j in range(k)]
        purity = (
            float(np.mean([labels[i] == names[assign[i]] for i in range(len(labels))]))
            if labels
            else None
        )
        return cls(
            centroids=centroids.tolist(),
            names=names,
            purity=purity,
            error_quantiles=np.percentile(errors, np.arange(101)).tolist(),
            threshold=float(np.percentile(errors, percentile)),
            percentile=percentile,
        )

    def label(self, latents: np.ndarray) -> list[str]:
        return [self.names[j] for j in nearest(latents, np.asarray(self.centroids))]

    def anomaly(self, errors: np.ndarray) -> np.ndarray:
        """Error / threshold: above 1 means less typical than `percentile`% of training images."""
        return np.asarray(errors) / self.threshold

    def save(self, folder: Path) -> Path:
        path = Path(folder) / LATENT_FILE
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> LatentSpace:
        return cls(**json.loads((Path(folder) / LATENT_FILE).read_text()))
