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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from models import metrics
from models.config import (
    ConfigError,
    ImageConfig,
    ModelsConfig,
    SegmenterConfig,
)
from models.data.dataset import CAPTIONS_FILE, Dataset, load_dataset
from models.data.domains import DOMAINS, get_domain
from models.segmenter import build_segmenter
from models.store import FILES

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


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: a seeded shuffle, `fraction` held out (none below 10
    images, where a validation score would be noise)."""
    order = np.random.default_rng(seed + 7919).permutation(n)
    k = round(n * fraction) if n >= 10 else 0
    return np.sort(order[k:]), np.sort(order[:k])


GRACE_EPOCHS = 3
"""Early epochs' validation scores swing; neither halving the rate nor stopping happens within
the first GRACE_EPOCHS epochs."""


def jitter(x: tf.Tensor, mirror: bool) -> tf.Tensor:
    """Another view of a batch of images: shifted up to 4 pixels, re-lit, noised, and (with
    `mirror`) mirrored left-right per image."""
    n = tf.shape(x)[0]
    if mirror:
        flip = tf.random.uniform([n, 1, 1, 1]) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    shift = tf.random.uniform([2], -4, 5, dtype=tf.int32)
    x = tf.roll(x, shift=shift, axis=[1, 2])
    gain = tf.random.uniform([n, 1, 1, 1], 0.85, 1.15)
    bias = tf.random.uniform([n, 1, 1, 1], -0.05, 0.05)
    return tf.clip_by_value(x * gain + bias + tf.random.normal(tf.shape(x), 0, 0.02), 0.0, 1.0)


@dataclass
class LoopConfig:
    """How long and how fast a fit trains, the same for every model."""

    epochs: int
    """A ceiling: early stopping ends most fits sooner."""
    learning_rate: float
    min_steps: int = 2000
    """Small data sets get more epochs, up to this many steps, so defaults fit 1k images too."""
    patience: int = 4
    """Epochs without a better validation score before stopping; the rate halves after half."""
    min_delta: float = 1e-3
    """A better score must beat the best by this much."""
    max_steps: int | None = None
    progress: bool = True


class EpochLoop:
    """Epochs with a progress bar, validation after each, the best weights kept.

    The learning rate warms up over the first steps, halves when validation stalls, and the
    fit stops after `patience` epochs without a better score; the weights of the best epoch
    are restored at the end and `save` is called whenever a new best is reached (so an
    interrupted fit leaves its best checkpoint on disk).
    """

    def __init__(self, name: str, cfg: LoopConfig, steps_per_epoch: int) -> None:
        self.name, self.cfg, self.steps_per_epoch = name, cfg, max(steps_per_epoch, 1)
        self.epochs = max(cfg.epochs, math.ceil(cfg.min_steps / self.steps_per_epoch))
        self.epochs = min(self.epochs, max(cfg.epochs, 400))
        self.optimizer = keras.optimizers.Adam(cfg.learning_rate, clipnorm=5.0)
        self.warmup = min(self.steps_per_epoch, 100)

    def _set_lr(self, value: float) -> None:
        self.optimizer.learning_rate.assign(value)

    def run(
        self,
        batches: Callable[[int], Iterator[Batch]],
        train_step: Callable[..., dict[str, tf.Tensor]],
        weights: list[keras.Model],
        save: Callable[[], None],
        validate: Callable[[], dict[str, float]] | None = None,
    ) -> list[dict[str, float]]:
        """`validate()` returns validation metrics with a `score` to maximise."""
        cfg, history = self.cfg, []
        lr, done, best, best_epoch, since_halving = cfg.learning_rate, 0, -math.inf, 0, 0
        best_weights = None
        for epoch in range(self.epochs):
            start = time.monotonic()
            trained = self._epoch(epoch, batches, train_step, done, lr)
            record: dict[str, float] = {"epoch": epoch + 1, **trained}
            done += int(record.pop("steps"))
            if validate is not None:
                record.update({f"val_{k}": v for k, v in validate().items()})
            record["lr"] = lr
            record["seconds"] = round(time.monotonic() - start, 2)
            score = record.get("val_score", -float(record.get("loss", 0.0)))
            if validate is None or score > best + cfg.min_delta:
                best, best_epoch, since_halving = score, epoch, 0
                best_weights = [m.get_weights() for m in weights]
                save()
                record["best"] = 1
            else:
                since_halving += 1
            history.append(record)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch")
            log.info("%s epoch %d/%d: %s", self.name, epoch + 1, self.epochs, shown)
            stalled = epoch - best_epoch
            if cfg.max_steps is not None and done >= cfg.max_steps:
                break
            if validate is not None and stalled >= cfg.patience and epoch >= GRACE_EPOCHS:
                log.info(
                    "%s: no better validation score for %d epochs; best was epoch %d",
                    self.name,
                    stalled,
                    best_epoch + 1,
                )
                break
            if since_halving >= max(1, cfg.patience // 2) and epoch >= GRACE_EPOCHS:
                lr, since_halving = lr / 2, 0
                self._set_lr(lr)
        if best_weights is not None:
            for m, w in zip(weights, best_weights, strict=True):
                m.set_weights(w)
        return history

    def _epoch(
        self,
        epoch: int,
        batches: Callable[[int], Iterator[Batch]],
        train_step: Callable[..., dict[str, tf.Tensor]],
        done: int,
        lr: float,
    ) -> dict[str, float]:
        sums: dict[str, float] = {}
        n = 0
        bar = tqdm(
            batches(epoch),
            total=self.steps_per_epoch,
            unit="batch",
            leave=False,
            desc=f"{self.name} {epoch + 1}/{self.epochs}",
            disable=not self.cfg.progress,
        )
        for batch in bar:
            if done + n < self.warmup:
                self._set_lr(lr * (0.1 + 0.9 * (done + n) / self.warmup))
            elif done + n == self.warmup:
                self._set_lr(lr)
            out = train_step(*(tf.constant(b) for b in batch))
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            bar.set_postfix({k: f"{v / n:.4f}" for k, v in sums.items()})
            if self.cfg.max_steps is not None and done + n >= self.cfg.max_steps:
                break
        return {"steps": n, **{k: v / max(n, 1) for k, v in sums.items()}}


def _shuffled(n: int, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for i in range(0, n - batch + 1 if n >= batch else 1, batch):
        yield order[i : i + batch]


def save_history(
    out: Path, name: str, history: list[dict[str, float]], extra: dict[str, Any]
) -> None:
    (Path(out) / f"history_{name}.json").write_text(
        json.dumps({"model": name, **extra, "history": history}, indent=1) + "\n"
    )


def loop_config(c: Any, epochs: int | None, max_steps: int | None, progress: bool) -> LoopConfig:
    """The loop settings of a model's config section, with the command line's overrides:
    epochs asked for are a hard ceiling; the config's are raised for small data sets."""
    return LoopConfig(
        epochs=epochs or c.epochs,
        learning_rate=c.learning_rate,
        min_steps=0 if epochs else c.min_steps,
        patience=c.patience,
        max_steps=max_steps,
        progress=progress,
    )


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
    """Train the U-Net on the data set's masks (a data set without masks cannot train it);
    the epoch with the best validation mIoU is kept."""
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
    train, val = split_indices(len(ds), sc.validation_split, seed)
    loop = EpochLoop(
        "segmenter", loop_config(sc, epochs, max_steps, progress), len(train) // sc.batch_size
    )
    rng = np.random.default_rng(seed)
    masks = ds.masks.astype(np.int32)

    def batches(_: int) -> Iterator[Batch]:
        for idx in _shuffled(len(train), sc.batch_size, rng):
            yield ds.images[train[idx]], masks[train[idx]]

    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            )
        loop.optimizer.apply(tape.gradient(loss, variables), variables)
        acc = tf.reduce_mean(
            tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        )
        return {"loss": loss, "pixel_accuracy": acc}

    def validate() -> dict[str, float]:
        conf = np.zeros((len(sc.class_names),) * 2, np.int64)
        for i in range(0, len(val), 128):
            idx = val[i : i + 128]
            pred = np.argmax(model(tf.constant(ds.images[idx]), training=False).numpy(), -1)
            conf += metrics.confusion(pred, ds.masks[idx], len(sc.class_names))
        miou = metrics.iou_scores(conf, sc.class_names)["mIoU"]
        return {"mIoU": miou, "score": miou}

    Path(out).mkdir(parents=True, exist_ok=True)

    def save() -> None:
        model.save_weights(Path(out) / FILES["segmenter"][0])
        cfg.save(out)

    history = loop.run(batches, train_step, [model], save, validate if len(val) else None)
    save_history(out, "segmenter", history, {"images": len(train), "validation": len(val)})
    return history
