"""Whether an image is of the domain the models were trained on, without TensorFlow.

No one signal separates every kind of stranger: the VAE draws smooth photographs and flat
textures well enough, noise can look as busy as a cluttered scene, and the captioner's encoder
maps a greyscale photograph near some scenes. Together they do: an image is out of the domain
when its vector of signals lies where no training image's does (Mahalanobis distance above
its `percentile` on the training images). The signals, each from what the device computes
anyway, plus two numbers about the pixels:

- how compressible the 8-bit model input is (zlib bytes per byte: input complexity, after
  Serra et al., ICLR 2020, "Input complexity and out-of-distribution detection with
  likelihood-based generative models") and its mean absolute neighbour difference;
- the VAE's mean squared reconstruction error and the Mahalanobis distance of its latent mean;
- the segmenter's mean per-pixel entropy;
- the Mahalanobis distance of the captioner encoder's mean region feature.

Fitted by `s3e-train fit domain` (`models.domain_training`), saved as `domain_model.json`
beside the weights and shipped in bundles, so evaluation and the device read the same numbers.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DOMAIN_FILE = "domain_model.json"
DOMAIN_MODELS = ("segmenter", "captioner_encoder")
"""The bundle's graphs, besides the VAE's, whose outputs the device feeds the model."""
SIGNALS = (
    "complexity",
    "roughness",
    "log_vae_mse",
    "log_latent_distance",
    "log_segmenter_entropy",
    "log_region_distance",
)
EPS = 1e-9


def pixel_signals(x: np.ndarray) -> tuple[float, float]:
    """(zlib bytes per byte of the 8-bit image, mean absolute neighbour difference) of one
    model input (H, W, C) in [0, 1]."""
    u8 = np.clip(np.round(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)
    complexity = len(zlib.compress(u8.tobytes(), 6)) / u8.size
    xf = np.asarray(x, np.float32)
    rough = float(np.abs(np.diff(xf, axis=0)).mean() + np.abs(np.diff(xf, axis=1)).mean())
    return complexity, rough


def segmenter_entropy(logits: np.ndarray) -> float:
    """Mean per-pixel entropy of the segmenter's class distribution, logits (H, W, K)."""
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return float(-(p * np.log(p + EPS)).sum(-1).mean())


def _mahalanobis(v: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = np.atleast_2d(v) - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, precision, d), 0.0))


def _precision(x: np.ndarray, shrink: float) -> np.ndarray:
    """Inverse covariance, shrunk towards a multiple of the identity (stable with few
    images per dimension)."""
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    cov = cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    return np.linalg.inv(cov)


@dataclass
class DomainModel:
    """The training images' signals: their mean and inverse covariance, and the distance
    above which an image is out of the domain."""

    signals: list[str]
    mean: list[float]
    precision: list[list[float]]
    region_mean: list[float]
    region_precision: list[list[float]]
    threshold: float
    percentile: float

    def region_distance(self, regions: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of mean region features (n, d)."""
        return _mahalanobis(
            regions, np.asarray(self.region_mean), np.asarray(self.region_precision)
        )

    def vectors(
        self,
        pixels: np.ndarray,
        mse: np.ndarray,
        latent_distance: np.ndarray,
        entropy: np.ndarray,
        regions: np.ndarray,
    ) -> np.ndarray:
        """Signal vectors (n, 6) from (n, 2) pixel signals and per-image model outputs."""
        return signal_vectors(pixels, mse, latent_distance, entropy, self.region_distance(regions))

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """Distance / threshold: above 1 is out of the domain."""
        d = _mahalanobis(vectors, np.asarray(self.mean), np.asarray(self.precision))
        return d / self.threshold

    def save(self, folder: Path) -> Path:
        path = Path(folder) / DOMAIN_FILE
        path.write_text(json.dumps(asdict(self)) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> DomainModel | None:
        path = Path(folder) / DOMAIN_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


def signal_vectors(
    pixels: np.ndarray,
    mse: np.ndarray,
    latent_distance: np.ndarray,
    entropy: np.ndarray,
    region_distance: np.ndarray,
) -> np.ndarray:
    """The signals in `SIGNALS` order; distances and errors as logarithms (their spread over
    the domain is multiplicative)."""
    p = np.atleast_2d(pixels)
    logs = [
        np.log(np.asarray(a, np.float64) + EPS)
        for a in (mse, latent_distance, entropy, region_distance)
    ]
    return np.column_stack([p[:, 0], p[:, 1], *logs])


def fit_domain_model(
    pixels: np.ndarray,
    mse: np.ndarray,
    latent_distance: np.ndarray,
    entropy: np.ndarray,
    regions: np.ndarray,
    percentile: float = 99.5,
) -> DomainModel:
    """Fit on the training images' signals; `regions`: their mean region features (n, d)."""
    region_mean = regions.mean(axis=0)
    region_precision = _precision(regions, 1e-2)
    region_distance = _mahalanobis(regions, region_mean, region_precision)
    v = signal_vectors(pixels, mse, latent_distance, entropy, region_distance)
    mean, precision = v.mean(axis=0), _precision(v, 1e-6)
    threshold = float(np.percentile(_mahalanobis(v, mean, precision), percentile))
    return DomainModel(
        signals=list(SIGNALS),
        mean=mean.tolist(),
        precision=precision.tolist(),
        region_mean=region_mean.tolist(),
        region_precision=region_precision.tolist(),
        threshold=threshold,
        percentile=percentile,
    )
