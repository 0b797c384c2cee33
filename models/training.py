"""`s3e-train fit`: train one of the three models on a data set folder, with a progress bar.

Each fit reads (or creates) the models folder's `config.json`, trains, saves the weights and a
JSON history beside them. Loops are explicit tf.functions rather than `Model.fit` because the
captioner unrolls its one-step decoder, and one loop shape for all three keeps output uniform.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from models.captioner import Captioner
from models.config import (
    CaptionerConfig,
    ConfigError,
    ImageConfig,
    ModelsConfig,
    SegmenterConfig,
    VAEConfig,
    grid_size,
)
from models.data.dataset import CAPTIONS_FILE, Dataset, load_dataset
from models.data.domains import DOMAINS, get_domain
from models.data.tokens import Vocabulary, tokenize
from models.latent import LatentSpace, reconstruction_error
from models.segmenter import build_segmenter
from models.store import FILES, save_captioner
from models.vae import build_vae_decoder, build_vae_encoder

log = logging.getLogger(__name__)
Batch = tuple[np.ndarray, ...]


def data_image_config(
    data: Path, size: int | None = None, channels: int | None = None
) -> tuple[str, ImageConfig]:
    """Domain and image shape of a data set: from a generated set's info, else the defaults."""
    try:
        info = json.loads((Path(data) / CAPTIONS_FILE).read_text()).get("info", {})
    except (OSError, ValueError, AttributeError):
        info = {}  # load_dataset reports what is wrong with the file, naming it
    domain = info.get("domain") if info.get("domain") in DOMAINS else "custom"
    default_channels = get_domain(domain).CHANNELS if domain in DOMAINS else 3
    return domain, ImageConfig(
        size=size or int(info.get("size", 64)), channels=channels or default_channels
    )


def open_config(
    out: Path, data: Path, size: int | None, channels: int | None
) -> tuple[ModelsConfig, Dataset]:
    """The models folder's config (created on first fit) and the data set loaded to match it."""
    domain, image = data_image_config(data, size, channels)
    if (Path(out) / "config.json").exists():
        cfg = ModelsConfig.load(out)
        if (size and size != cfg.image.size) or (channels and channels != cfg.image.channels):
            raise ConfigError(
                f"{out}/config.json has image {cfg.image.size}px x {cfg.image.channels}ch; "
                f"asked for {size or cfg.image.size}px x {channels or cfg.image.channels}ch: "
                "use a new --out folder"
            )
    else:
        cfg = ModelsConfig(domain=domain, image=image)
    ds = load_dataset(data, cfg.image.size, cfg.image.channels, progress=True)
    return cfg, ds


def run_epochs(
    name: str,
    epochs: int,
    batches: Callable[[int], Iterator[Batch]],
    steps_per_epoch: int,
    train_step: Callable[..., dict[str, tf.Tensor]],
    max_steps: int | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Run `train_step` over `batches(epoch)`; one progress bar per epoch, history of means."""
    history: list[dict[str, float]] = []
    done = 0
    for epoch in range(epochs):
        sums: dict[str, float] = {}
        n = 0
        start = time.monotonic()
        bar = tqdm(
            batches(epoch),
            total=steps_per_epoch,
            desc=f"{name} {epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
            disable=not progress,
        )
        for batch in bar:
            out = train_step(*(tf.constant(b) for b in batch))
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            done += 1
            bar.set_postfix({k: f"{v / n:.4f}" for k, v in sums.items()})
            if max_steps is not None and done >= max_steps:
                break
        record = {
            "epoch": epoch + 1,
            **{k: v / max(n, 1) for k, v in sums.items()},
            "seconds": round(time.monotonic() - start, 2),
        }
        history.append(record)
        log.info(
            "%s epoch %d/%d: %s",
            name,
            epoch + 1,
            epochs,
            ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"),
        )
        if max_steps is not None and done >= max_steps:
            break
    return history


def _optimizer(lr: float, total_steps: int) -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(total_steps, 1), alpha=0.05)
    return keras.optimizers.Adam(schedule, clipnorm=5.0)


def _shuffled(n: int, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for i in range(0, n - batch + 1 if n >= batch else 1, batch):
        yield order[i : i + batch]


def _save_history(
    out: Path, name: str, history: list[dict[str, float]], extra: dict[str, Any]
) -> None:
    (Path(out) / f"history_{name}.json").write_text(
        json.dumps({"model": name, **extra, "history": history}, indent=1) + "\n"
    )


def fit_captioner(
    data: Path,
    out: Path,
    attention: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    size: int | None = None,
    channels: int | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the captioner with teacher forcing, one random reference per image per epoch."""
    keras.utils.set_random_seed(seed)
    cfg, ds = open_config(out, data, size, channels)
    keep = [i for i, c in enumerate(ds.captions) if c]
    if not keep:
        raise ConfigError(f"{data}: no captions, so the captioner cannot be trained on it")
    all_caps = [c for i in keep for c in ds.captions[i]]
    cc = cfg.captioner or CaptionerConfig()
    cc.vocab = Vocabulary.build(all_caps).words
    cc.max_len = min(max(len(tokenize(c)) for c in all_caps) + 2, 40)
    cc.attention = attention or cc.attention
    cc.epochs = epochs or cc.epochs
    cc.grid = grid_size(cc, cfg.image)
    cfg.captioner = cc
    vocab = Vocabulary(cc.vocab)
    cap = Captioner(cc, cfg.image)
    steps = max(len(keep) // cc.batch_size, 1)
    opt = _optimizer(cc.learning_rate, steps * cc.epochs)
    rng = np.random.default_rng(seed)
    encoded = [[vocab.encode(c, cc.max_len) for c in ds.captions[i]] for i in keep]
    images = ds.images[keep]

    def batches(_: int) -> Iterator[Batch]:
        for idx in _shuffled(len(keep), cc.batch_size, rng):
            seqs = np.array([encoded[i][rng.integers(len(encoded[i]))] for i in idx], np.int32)
            yield images[idx], seqs

    variables = cap.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor, seqs: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            ce, penalty = cap.loss(x, seqs, training=True)
            loss = ce + cc.alpha_c * penalty
        opt.apply(tape.gradient(loss, variables), variables)
        return {"loss": loss, "ce": ce, "attention_penalty": penalty}

    history = run_epochs(
        f"captioner[{cc.attention}]", cc.epochs, batches, steps, train_step, max_steps, progress
    )
    Path(out).mkdir(parents=True, exist_ok=True)
    save_captioner(cap, out)
    cfg.save(out)
    _save_history(out, "captioner", history, {"attention": cc.attention, "images": len(keep)})
    return history


def fit_segmenter(
    data: Path,
    out: Path,
    epochs: int | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    size: int | None = None,
    channels: int | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the U-Net on the data set's masks (a data set without masks cannot train it)."""
    keras.utils.set_random_seed(seed)
    cfg, ds = open_config(out, data, size, channels)
    if ds.masks is None:
        raise ConfigError(f"{data}: no masks/ folder, so the segmenter cannot be trained on it")
    sc = cfg.segmenter or SegmenterConfig()
    n_classes = int(ds.masks.max()) + 1
    sc.class_names = ds.class_names or [f"class-{i}" for i in range(n_classes)]
    sc.epochs = epochs or sc.epochs
    cfg.segmenter = sc
    model = build_segmenter(sc, cfg.image)
    steps = max(len(ds) // sc.batch_size, 1)
    opt = _optimizer(sc.learning_rate, steps * sc.epochs)
    rng = np.random.default_rng(seed)
    masks = ds.masks.astype(np.int32)

    def batches(_: int) -> Iterator[Batch]:
        for idx in _shuffled(len(ds), sc.batch_size, rng):
            yield ds.images[idx], masks[idx]

    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            )
        opt.apply(tape.gradient(loss, variables), variables)
        acc = tf.reduce_mean(
            tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        )
        return {"loss": loss, "pixel_accuracy": acc}

    history = run_epochs("segmenter", sc.epochs, batches, steps, train_step, max_steps, progress)
    Path(out).mkdir(parents=True, exist_ok=True)
    model.save_weights(Path(out) / FILES["segmenter"][0])
    cfg.save(out)
    _save_history(out, "segmenter", history, {"images": len(ds)})
    return history


def vae_errors(
    enc: keras.Model, dec: keras.Model, images: np.ndarray, pool: int, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and reconstruction errors of images, in batches."""
    mus, errs = [], []
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        mu, _ = enc(tf.constant(x), training=False)
        recon = dec(mu, training=False).numpy()
        mus.append(mu.numpy())
        errs.append(reconstruction_error(x, recon, pool))
    return np.concatenate(mus), np.concatenate(errs)


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
) -> list[dict[str, float]]:
    """Train the VAE, then fit its latent space: named clusters and anomaly calibration."""
    keras.utils.set_random_seed(seed)
    cfg, ds = open_config(out, data, size, channels)
    vc = cfg.vae or VAEConfig()
    vc.epochs = epochs or vc.epochs
    vc.train_on = train_on or vc.train_on
    cfg.vae = vc
    if vc.train_on == "normal":
        if ds.meta is None:
            raise ConfigError(
                f"{data}: vae.train_on = 'normal' needs meta.json with a 'normal' flag"
            )
        train_idx = np.array([i for i, m in enumerate(ds.meta) if m.get("normal")], np.int64)
        if not len(train_idx):
            raise ConfigError(
                f"{data}: vae.train_on = 'normal' but no image has meta 'normal': true"
            )
    else:
        train_idx = np.arange(len(ds))
    enc, dec = build_vae_encoder(vc, cfg.image), build_vae_decoder(vc, cfg.image)
    steps = max(len(train_idx) // vc.batch_size, 1)
    opt = _optimizer(vc.learning_rate, steps * vc.epochs)
    rng = np.random.default_rng(seed)
    images = ds.images[train_idx]
    pixels = math.prod(images.shape[1:])

    def batches(_: int) -> Iterator[Batch]:
        for idx in _shuffled(len(images), vc.batch_size, rng):
            yield (images[idx],)

    variables = enc.trainable_variables + dec.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            mu, log_var = enc(x, training=True)
            z = mu + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mu))
            recon = dec(z, training=True)
            rec = tf.reduce_mean(tf.reduce_sum(keras.losses.binary_crossentropy(x, recon), [1, 2]))
            kl = tf.reduce_mean(-0.5 * tf.reduce_sum(1 + log_var - mu**2 - tf.exp(log_var), -1))
            loss = rec + vc.beta * kl
        opt.apply(tape.gradient(loss, variables), variables)
        return {"loss": loss / pixels, "reconstruction": rec / pixels, "kl": kl}

    history = run_epochs("vae", vc.epochs, batches, steps, train_step, max_steps, progress)
    latents, errors = vae_errors(enc, dec, ds.images, vc.anomaly_pool)
    labels = [m.get("primary_label", "unknown") for m in ds.meta] if ds.meta else None
    space = LatentSpace.fit(latents, labels, errors[train_idx], vc.clusters, vc.anomaly_percentile)
    Path(out).mkdir(parents=True, exist_ok=True)
    enc.save_weights(Path(out) / FILES["vae"][0])
    dec.save_weights(Path(out) / FILES["vae"][1])
    space.save(out)
    cfg.save(out)
    _save_history(
        out,
        "vae",
        history,
        {"images": len(train_idx), "train_on": vc.train_on, "cluster_purity": space.purity},
    )
    return history
