"""`s3e-train fit vae`: a semi-supervised VAE that learns from every image and from the labels
of a fraction of them (`vae.label_fraction`), then calibrates labels, anomaly and
out-of-domain scores on the training images.

Each batch mixes images drawn from all of them with a few labelled ones: the ELBO
(reconstruction + KL) uses every row, the decoder sees the true labels of labelled rows and the
label head's probabilities elsewhere (the relaxed form of M2's sum over labels). The label head
learns from an augmented view of each image (mirrored, shifted, re-lit): labelled rows against
their labels, every other row against the labels the head is already sure of on the plain view
(FixMatch's pseudo-labels, per label: above 0.95 or below 0.05). With labels on 10% of the
images, the labelled rows alone are memorised within a few epochs; the pseudo-labels carry
what they know to the other 90%.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from core.latent import (
    fit_latent_space,
    mean_squared_error,
    reconstruction_error,
    sigmoid,
)
from models.config import ConfigError, VAEConfig
from models.data.dataset import Dataset
from models.store import FILES
from models.training import (
    Batch,
    EpochLoop,
    _shuffled,
    jitter,
    loop_config,
    open_config,
    save_history,
    split_indices,
)
from models.vae import build_vae_decoder, build_vae_encoder

log = logging.getLogger(__name__)


def image_labels(ds: Dataset) -> list[list[str]] | None:
    """Each image's labels: meta.json's `labels`, else the categories of its instances."""
    if ds.meta and all("labels" in m for m in ds.meta):
        return [list(m["labels"]) for m in ds.meta]
    if ds.instances is not None:
        return [sorted({c for c, _ in insts}) for insts in ds.instances]
    return None


def label_space(per_image: list[list[str]]) -> tuple[list[str], str]:
    """(labels to predict, the none label): a label only ever given alone is the none label
    (chest: `normal`), given when the head predicts nothing else."""
    names = sorted({lab for labs in per_image for lab in labs})
    alone = [n for n in names if all(labs == [n] for labs in per_image if n in labs)]
    none = alone[0] if len(alone) == 1 and len(names) > 1 else ""
    return [n for n in names if n != none], none


class VaeOutputs(NamedTuple):
    mu: np.ndarray
    probs: np.ndarray
    """(N, labels) label probabilities; (N, 0) without labels."""
    errors: np.ndarray
    """Anomaly errors (counterfactual where the domain has a none label)."""
    mse: np.ndarray


def vae_outputs(
    enc: keras.Model, dec: keras.Model, cfg: VAEConfig, images: np.ndarray, batch: int = 256
) -> VaeOutputs:
    """Everything the calibration and the evaluation need, in batches."""
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        out = enc(tf.constant(x), training=False)
        mu = out[0].numpy()
        probs = sigmoid(out[2].numpy()) if cfg.labels else np.zeros((len(x), 0), np.float32)
        if cfg.labels:
            recon = dec([tf.constant(mu), tf.constant(probs)], training=False).numpy()
            off = np.zeros_like(probs) if cfg.none_label else probs
            anomaly = dec([tf.constant(mu), tf.constant(off)], training=False).numpy()
        else:
            recon = anomaly = dec(tf.constant(mu), training=False).numpy()
        for part, value in zip(
            parts,
            (
                mu,
                probs,
                reconstruction_error(x, anomaly, cfg.anomaly_pool),
                mean_squared_error(x, recon),
            ),
            strict=True,
        ):
            part.append(value)
    return VaeOutputs(*(np.concatenate(p) for p in parts))


def macro_f1(probs: np.ndarray, truth: np.ndarray) -> float:
    pred = probs >= 0.5
    scores = []
    for j in range(truth.shape[1]):
        tp = float((pred[:, j] & truth[:, j]).sum())
        denom = float(pred[:, j].sum() + truth[:, j].sum())
        scores.append(2 * tp / denom if denom else 1.0)
    return float(np.mean(scores)) if scores else 0.0


def _labelled(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which images' labels training may see: a seeded `fraction` of all of them."""
    k = max(1, math.ceil(n * fraction))
    return np.sort(np.random.default_rng(seed + 104729).permutation(n)[:k])


def fit_vae(
    data: Path,
    out: Path,
    epochs: int | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    train_on: str | None = None,
    size: int | None = None,
    channels: int | None = None,
    progress: bool = True,
    label_fraction: float | None = None,
) -> list[dict[str, float]]:
    """Train the VAE (semi-supervised where the data has labels), keep the best epoch, then
    calibrate labels, anomaly and out-of-domain scores."""
    keras.utils.set_random_seed(seed)
    cfg, ds = open_config(out, data, size, channels)
    vc = cfg.vae or VAEConfig()
    vc.epochs = epochs or vc.epochs
    vc.train_on = train_on or vc.train_on
    vc.label_fraction = label_fraction or vc.label_fraction
    per_image = image_labels(ds)
    vc.labels, vc.none_label = label_space(per_image) if per_image else ([], "")
    vc.__post_init__()
    cfg.vae = vc
    truth = np.array([[lab in labs for lab in vc.labels] for labs in per_image or []], bool)
    pool = _training_pool(ds, vc, data)
    train, val = (pool[k] for k in split_indices(len(pool), vc.validation_split, seed))
    known = np.zeros(len(ds), bool)
    if vc.labels:
        known[_labelled(len(ds), vc.label_fraction, seed)] = True
    lab_train, lab_val = train[known[train]], val[known[val]]
    log.info(
        "vae: %d training, %d validation images; labels %s%s from %d images",
        len(train),
        len(val),
        vc.labels or "none",
        f" (none: {vc.none_label})" if vc.none_label else "",
        len(lab_train),
    )
    enc, dec = build_vae_encoder(vc, cfg.image), build_vae_decoder(vc, cfg.image)
    loop = EpochLoop(
        "vae", loop_config(vc, epochs, max_steps, progress), len(train) // vc.batch_size
    )
    rng = np.random.default_rng(seed)
    y_all = truth.astype(np.float32) if vc.labels else np.zeros((len(ds), 0), np.float32)
    step = _train_step(enc, dec, vc, loop, math.prod(ds.images.shape[1:]))

    def batches(_: int) -> Iterator[Batch]:
        k = vc.labelled_per_batch if len(lab_train) else 0
        for idx in _shuffled(len(train), vc.batch_size - k, rng):
            rows = np.concatenate([train[idx], rng.choice(lab_train, k) if k else []])
            rows = rows.astype(np.int64)
            yield ds.images[rows], y_all[rows], known[rows].astype(np.float32)

    def validate() -> dict[str, float]:
        o = vae_outputs(enc, dec, vc, ds.images[val])
        res: dict[str, float] = {"mse": float(o.mse.mean())}
        res["score"] = -10 * res["mse"]
        if len(lab_val):
            f1 = macro_f1(o.probs[known[val]], truth[lab_val])
            res.update({"label_macro_f1": f1, "score": f1 - 10 * res["mse"]})
        return res

    Path(out).mkdir(parents=True, exist_ok=True)

    def save() -> None:
        enc.save_weights(Path(out) / FILES["vae"][0])
        dec.save_weights(Path(out) / FILES["vae"][1])
        cfg.save(out)

    history = loop.run(batches, step, [enc, dec], save, validate if len(val) else None)
    _calibrate(enc, dec, vc, ds, train, truth, known).save(out)
    save_history(
        out,
        "vae",
        history,
        {
            "images": len(train),
            "validation": len(val),
            "labelled_images": int(known.sum()),
            "label_fraction": vc.label_fraction,
            "labels": vc.labels,
        },
    )
    return history


def _training_pool(ds: Dataset, vc: VAEConfig, data: Path) -> np.ndarray:
    if vc.train_on == "all":
        return np.arange(len(ds))
    if ds.meta is None:
        raise ConfigError(f"{data}: vae.train_on = 'normal' needs meta.json with a 'normal' flag")
    pool = np.array([i for i, m in enumerate(ds.meta) if m.get("normal")], np.int64)
    if not len(pool):
        raise ConfigError(f"{data}: vae.train_on = 'normal' but no image has meta 'normal': true")
    return pool


def augment(x: tf.Tensor) -> tf.Tensor:
    """A label-preserving view: labels name what is present, not where, so a mirror keeps
    them."""
    return jitter(x, mirror=True)


def _label_loss(
    logits_strong: tf.Tensor, logits_plain: tf.Tensor, y: tf.Tensor, known: tf.Tensor
) -> tf.Tensor:
    """Labelled rows against their labels, the others against confident pseudo-labels; both
    on the augmented view, summed over labels and averaged over the rows that count."""
    bce = keras.losses.binary_crossentropy(y[..., None], logits_strong[..., None], from_logits=True)
    supervised = tf.reduce_sum(bce, -1) * known
    plain = tf.stop_gradient(tf.sigmoid(logits_plain))
    sure = tf.cast((plain > 0.95) | (plain < 0.05), tf.float32) * (1.0 - known[:, None])
    pseudo = keras.losses.binary_crossentropy(
        tf.round(plain)[..., None], logits_strong[..., None], from_logits=True
    )
    unsupervised = tf.reduce_sum(pseudo * sure, -1)
    rows = tf.reduce_sum(known) + tf.reduce_sum(tf.cast(tf.reduce_any(sure > 0, -1), tf.float32))
    return tf.reduce_sum(supervised + unsupervised) / tf.maximum(rows, 1.0)


def _train_step(enc: keras.Model, dec: keras.Model, vc: VAEConfig, loop: EpochLoop, pixels: int):
    variables = enc.trainable_variables + dec.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor, y: tf.Tensor, known: tf.Tensor) -> dict[str, Any]:
        with tf.GradientTape() as tape:
            out = enc(x, training=True)
            mu, log_var = out[0], out[1]
            z = mu + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mu))
            if vc.labels:
                probs = tf.sigmoid(out[2])
                given = known[:, None] * y + (1.0 - known[:, None]) * probs
                recon = dec([z, given], training=True)
                strong = enc(augment(x), training=True)[2]
                label = _label_loss(strong, out[2], y, known)
            else:
                recon, label = dec(z, training=True), tf.constant(0.0)
            rec = tf.reduce_mean(tf.reduce_sum(keras.losses.binary_crossentropy(x, recon), [1, 2]))
            kl = tf.reduce_mean(-0.5 * tf.reduce_sum(1 + log_var - mu**2 - tf.exp(log_var), -1))
            loss = rec + vc.beta * kl + vc.label_weight * label
        loop.optimizer.apply(tape.gradient(loss, variables), variables)
        return {"loss": loss / pixels, "reconstruction": rec / pixels, "kl": kl, "label": label}

    return train_step


def _calibrate(
    enc: keras.Model,
    dec: keras.Model,
    vc: VAEConfig,
    ds: Dataset,
    train: np.ndarray,
    truth: np.ndarray,
    known: np.ndarray,
) -> Any:
    """Anomaly on the normal training images (those the labels or the head call none)."""
    o = vae_outputs(enc, dec, vc, ds.images[train])
    normal = np.ones(len(train), bool)
    if vc.none_label:
        predicted_none = ~(o.probs >= 0.5).any(axis=1)
        labelled = known[train]
        normal = np.where(labelled, ~truth[train].any(axis=1), predicted_none)
    log.info("vae calibration on %d training images (%d normal)", len(train), normal.sum())
    return fit_latent_space(
        vc.labels,
        vc.none_label,
        o.mu,
        o.errors,
        normal,
        o.mse,
        bool(vc.none_label),
        vc.anomaly_percentile,
        vc.ood_percentile,
    )


def eval_labels(
    probs: np.ndarray, names: list[str], none: str, per_image: list[list[str]]
) -> dict[str, Any]:
    """Macro-F1 over the labels (the none label included), and how often an image with a
    finding is called none."""
    truth = np.array([[lab in labs for lab in names] for labs in per_image], bool)
    pred = probs >= 0.5
    out: dict[str, Any] = {"label_macro_f1": macro_f1(probs, truth)}
    out["label_f1"] = {n: macro_f1(probs[:, [j]], truth[:, [j]]) for j, n in enumerate(names)}
    if none:
        t_none, p_none = ~truth.any(axis=1), ~pred.any(axis=1)
        both = np.stack([p_none, t_none], 1).astype(np.float32)
        out["label_f1"][none] = macro_f1(both[:, :1], both[:, 1:].astype(bool))
        out["label_macro_f1"] = float(np.mean(list(out["label_f1"].values())))
        has = truth.any(axis=1)
        out["none_given_to_findings"] = float(p_none[has].mean()) if has.any() else 0.0
    return out
