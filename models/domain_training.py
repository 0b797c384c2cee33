"""`s3e-train fit domain`: the out-of-domain model (`core.domain`) of a models folder whose
segmenter, VAE and captioner are trained, fitted on the training images' signals.

It trains nothing: it runs the three models over the images and keeps where their signals
lie. Run it again after retraining any of them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from core.domain import DomainModel, fit_domain_model, pixel_signals, segmenter_entropy
from core.latent import LatentSpace
from models.config import ConfigError, ModelsConfig
from models.data.dataset import load_dataset
from models.store import has_model, load_captioner, load_segmenter, load_vae
from models.training import save_history
from models.vae_training import VaeOutputs, vae_outputs

log = logging.getLogger(__name__)
NEEDS = ("segmenter", "vae", "captioner")


def domain_signals(
    folder: Path, cfg: ModelsConfig, images: np.ndarray, o: VaeOutputs, space: LatentSpace
) -> dict[str, np.ndarray]:
    """Per image: pixel signals (n, 2), VAE mse and latent distance (from the caller's VAE
    outputs `o` of these images), segmenter entropy, and the encoder's mean region feature
    (n, d), from the Keras models."""
    seg, encoder = load_segmenter(folder, cfg), load_captioner(folder, cfg).encoder
    entropy, regions = [], []
    for i in range(0, len(images), 256):
        x = tf.constant(images[i : i + 256])
        entropy += [segmenter_entropy(z) for z in seg(x, training=False).numpy()]
        regions.append(encoder(x, training=False)[0].numpy().mean(axis=1))
    return {
        "pixels": np.array([pixel_signals(x) for x in images]),
        "mse": o.mse,
        "latent_distance": space.mahalanobis(o.mu),
        "entropy": np.array(entropy),
        "regions": np.concatenate(regions),
    }


def ood_scores(
    folder: Path, cfg: ModelsConfig, images: np.ndarray, o: VaeOutputs, space: LatentSpace
) -> np.ndarray:
    """Out-of-domain scores (above 1: out) by the folder's domain model, or by the VAE's own
    signals (`space`) for a folder without one."""
    model = DomainModel.load(folder)
    if model is None:
        return space.ood_score(o.mse, o.mu)
    s = domain_signals(folder, cfg, images, o, space)
    return model.score(
        model.vectors(s["pixels"], s["mse"], s["latent_distance"], s["entropy"], s["regions"])
    )


def fit_domain(data: Path, out: Path, percentile: float = 99.5) -> list[dict[str, float]]:
    """Fit and save the domain model of `out` on the images of `data`; its history."""
    missing = [m for m in NEEDS if not has_model(out, m)]
    if missing:
        raise ConfigError(f"{out}: the domain model needs trained {', '.join(missing)}")
    cfg = ModelsConfig.load(out)
    assert cfg.vae is not None
    ds = load_dataset(data, cfg.image.size, cfg.image.channels)
    enc, dec, space = load_vae(out, cfg)
    s = domain_signals(out, cfg, ds.images, vae_outputs(enc, dec, cfg.vae, ds.images), space)
    model = fit_domain_model(
        s["pixels"], s["mse"], s["latent_distance"], s["entropy"], s["regions"], percentile
    )
    model.save(out)
    rate = float(
        (
            model.score(
                model.vectors(
                    s["pixels"], s["mse"], s["latent_distance"], s["entropy"], s["regions"]
                )
            )
            > 1
        ).mean()
    )
    hist = [{"images": float(len(ds)), "threshold": model.threshold, "flagged_rate": rate}]
    save_history(out, "domain", hist, {"percentile": percentile, "signals": model.signals})
    log.info(
        "domain model: %d images, %.3f of them above the %.1fth percentile",
        len(ds),
        rate,
        percentile,
    )
    return hist
