"""A convolutional VAE whose latent space labels images, scores anomalies and finds neighbours.

After training, `LatentSpace` is fitted on the training latents: k-means clusters named from the
ground truth of their members (labels), and the distribution of reconstruction errors (anomaly
calibration). It is plain numpy and JSON so the device can use it without TensorFlow.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from models.config import ImageConfig, VAEConfig

LATENT_FILE = "vae_latent.json"


def build_vae_encoder(cfg: VAEConfig, image: ImageConfig) -> keras.Model:
    """Image -> (mu, log_var) of the latent posterior."""
    inp = keras.Input((image.size, image.size, image.channels), name="image")
    x = inp
    for f in cfg.filters:
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    mu = layers.Dense(cfg.latent_dim, name="mu")(x)
    log_var = layers.Dense(cfg.latent_dim, name="log_var")(x)
    return keras.Model(inp, [mu, log_var], name="vae_encoder")


def build_vae_decoder(cfg: VAEConfig, image: ImageConfig) -> keras.Model:
    """Latent z -> reconstructed image in [0, 1]."""
    side = image.size // 2 ** len(cfg.filters)
    z = keras.Input((cfg.latent_dim,), name="z")
    x = layers.Dense(256, activation="relu")(z)
    x = layers.Dense(side * side * cfg.filters[-1], activation="relu")(x)
    x = layers.Reshape((side, side, cfg.filters[-1]))(x)
    for f in reversed(cfg.filters):
        x = layers.UpSampling2D(interpolation="nearest")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    out = layers.Conv2D(
        image.channels, 3, padding="same", activation="sigmoid", name="reconstruction"
    )(x)
    return keras.Model(z, out, name="vae_decoder")


def reconstruction_error(images: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Mean squared error per image: the raw anomaly signal."""
    return ((images - recon) ** 2).reshape(len(images), -1).mean(axis=1)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Centroids by k-means++ seeding and Lloyd iterations."""
    rng = np.random.default_rng(seed)
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min(((x[:, None] - np.array(centroids)[None]) ** 2).sum(-1), axis=1)
        centroids.append(x[rng.choice(len(x), p=d / d.sum())])
    c = np.array(centroids)
    for _ in range(iters):
        assign = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[assign == j].mean(0) if np.any(assign == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


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
        assign = np.argmin(((latents[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
        names, majority = [], 0
        for j in range(k):
            members = [labels[i] for i in np.flatnonzero(assign == j)] if labels else []
            if members:
                name, count = Counter(members).most_common(1)[0]
                majority += count
            else:
                name = f"cluster-{j}"
            names.append(name)
        purity = majority / len(latents) if labels else None
        return cls(
            centroids=centroids.tolist(),
            names=names,
            purity=purity,
            error_quantiles=np.percentile(errors, np.arange(101)).tolist(),
            threshold=float(np.percentile(errors, percentile)),
            percentile=percentile,
        )

    def label(self, latents: np.ndarray) -> list[str]:
        c = np.asarray(self.centroids)
        return [
            self.names[j] for j in np.argmin(((latents[:, None] - c[None]) ** 2).sum(-1), axis=1)
        ]

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
