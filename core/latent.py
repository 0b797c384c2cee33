"""The VAE's calibration without TensorFlow: labels, anomaly and out-of-domain scores.

Fitted after training on the training images and saved as `vae_latent.json` beside the
weights (and in every bundle), so evaluation and the device read the same numbers:
- labels: the label head's probabilities against per-label thresholds; the domain's "none"
  label (chest: `normal`) when no other label is given;
- anomaly: reconstruction error / its `anomaly_percentile` on normal training images. In a
  domain with a none label it is the counterfactual error: the image decoded as if it had no
  finding (labels input zero), so a finding the decoder is told is absent shows as residual;
  and an image the label head gives a finding gets that finding's probability over its
  threshold (at least 1) added, since it is not a normal one even where the decoder draws the
  finding well enough to leave little residual (chest: the residual alone ranks some findings
  below normal images; the label head separates them). Added, not the larger of the two: the
  label head's probabilities saturate, and a score that stopped at their ceiling would read
  the same for every image with a finding, while the residual still tells them apart;
- out of domain, for a models folder without a domain model (`core.domain`, which decides
  when there is one): the larger of two ratios to their `ood_percentile` on training images,
  the mean squared reconstruction error and the Mahalanobis distance of the latent mean. An image
  the VAE cannot draw, or whose code lies where no training image's does, is not of the domain.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
LATENT_FILE = "vae_latent.json"


def reconstruction_error(images: np.ndarray, recon: np.ndarray, pool: int = 4) -> np.ndarray:
    """Per image: the largest absolute residual after `pool` x `pool` average pooling.

    Pooling averages away pixel noise, which the VAE cannot and should not reproduce; the
    maximum keeps a small unexplained structure (a nodule, a patch of consolidation) from being
    diluted by the rest of the image.
    """
    n, h, w, c = images.shape
    residual = (images - recon).reshape(n, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4))
    return np.abs(residual).reshape(n, -1).max(axis=1)


def mean_squared_error(images: np.ndarray, recon: np.ndarray) -> np.ndarray:
    return ((images - recon) ** 2).reshape(len(images), -1).mean(axis=1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


@dataclass
class LatentSpace:
    """Label thresholds, anomaly calibration and the out-of-domain model of one VAE."""

    labels: list[str]
    none_label: str
    thresholds: list[float]
    counterfactual: bool
    """Anomaly from the image decoded with every label off (a domain with a none label)."""
    error_quantiles: list[float]
    """Anomaly error at the 0th, 1st, ..., 100th percentile of the calibration images."""
    threshold: float
    percentile: float
    latent_mean: list[float]
    latent_precision: list[list[float]]
    """Inverse covariance of the training latent means (Mahalanobis distance)."""
    ood_mse: float
    ood_latent: float
    ood_percentile: float

    def label(self, probs: np.ndarray) -> list[tuple[str, float]]:
        """(name, probability) of the labels one image gets, most probable first."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        out = [
            (n, float(v)) for n, v, t in zip(self.labels, p, self.thresholds, strict=True) if v >= t
        ]
        if not out and self.none_label:
            out = [(self.none_label, float(1.0 - p.max(initial=0.0)))]
        return sorted(out, key=lambda kv: -kv[1])

    def anomaly(self, errors: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
        """Error / threshold: above 1 means less typical than `percentile`% of the normal
        training images. With a none label and the label `probs` (n, labels), an image given a
        finding (its probability at or over its threshold) adds the largest probability /
        threshold: above 1 whenever a finding is given, and still ordered by the residual."""
        score = np.asarray(errors, dtype=np.float64) / self.threshold
        if self.counterfactual and probs is not None and self.labels:
            p = np.atleast_2d(np.asarray(probs, dtype=np.float64)) / np.asarray(self.thresholds)
            given = p.max(axis=1)
            score = np.where(given >= 1.0, score + given, score)
        return score

    def mahalanobis(self, mu: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(mu) - np.asarray(self.latent_mean)
        return np.sqrt(np.einsum("ij,jk,ik->i", d, np.asarray(self.latent_precision), d))

    def ood_score(self, mse: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Above 1: out of the domain the VAE was trained on."""
        return np.maximum(np.asarray(mse) / self.ood_mse, self.mahalanobis(mu) / self.ood_latent)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / LATENT_FILE
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> LatentSpace:
        return cls(**json.loads((Path(folder) / LATENT_FILE).read_text()))


def fit_latent_space(
    labels: list[str],
    none_label: str,
    mu: np.ndarray,
    errors: np.ndarray,
    normal: np.ndarray,
    mse: np.ndarray,
    counterfactual: bool,
    percentile: float,
    ood_percentile: float,
) -> LatentSpace:
    """Calibrate on the training images: `errors` are anomaly errors, `normal` marks the
    images the anomaly is calibrated on, `mse` the plain reconstruction errors."""
    cov = np.cov(mu, rowvar=False) + 1e-3 * np.eye(mu.shape[1])
    mean = mu.mean(axis=0)
    if not normal.any():
        log.warning("no image known to be normal: the anomaly is calibrated on all images")
        normal = np.ones(len(errors), bool)
    space = LatentSpace(
        labels=list(labels),
        none_label=none_label,
        thresholds=[0.5] * len(labels),
        counterfactual=counterfactual,
        error_quantiles=np.percentile(errors[normal], np.arange(101)).tolist(),
        threshold=float(np.percentile(errors[normal], percentile)),
        percentile=percentile,
        latent_mean=mean.tolist(),
        latent_precision=np.linalg.inv(cov).tolist(),
        ood_mse=1.0,
        ood_latent=1.0,
        ood_percentile=ood_percentile,
    )
    space.ood_mse = float(np.percentile(mse, ood_percentile))
    space.ood_latent = float(np.percentile(space.mahalanobis(mu), ood_percentile))
    return space
