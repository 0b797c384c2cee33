"""`s3e-train fit captioner`: teacher forcing, attention supervision where the data has
regions, validation after each epoch, the best epoch kept.

Attention supervision (Liu et al., "Attention Correctness in Neural Image Captioning", AAAI
2017): a caption word that names an instance (a span of the data's `grounding`, or a category
name from `instances.json`) should attend to that instance's cells. Without instances the
captioner trains unsupervised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.tokens import Vocabulary, tokenize
from models import metrics
from models.captioner import Captioner
from models.config import CaptionerConfig, ConfigError, grid_size
from models.data.dataset import Dataset
from models.data.instances import grid_regions
from models.grounding import score_captions
from models.store import save_captioner
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

log = logging.getLogger(__name__)
VALIDATION_IMAGES = 500
"""Images of the validation split captioned after each epoch (the loss uses all of them)."""


class Targets:
    """Per image, the regions its captions name (normalised cell coverage, padded to R), and
    per caption the region each step's word names (-1: none; -2: none, and the caption's
    grounding is explicit, so the word is known to name nothing in the image)."""

    def __init__(
        self,
        ds: Dataset,
        encoded: list[list[list[int]]],
        grid: int,
        max_len: int,
        explicit: list[list[bool]],
    ) -> None:
        n = len(ds)
        self.token_region = [
            [np.full(max_len - 1, -2 if explicit[i][k] else -1, np.int32) for k in range(len(caps))]
            for i, caps in enumerate(encoded)
        ]
        regions: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.grounded_words = 0
        for i in range(n if ds.grounding is not None and ds.instances else 0):
            cover = [c for _, c in ds.instances[i]]  # type: ignore[index]
            if not cover:
                continue
            cells = grid_regions(np.stack(cover), grid)
            keys: dict[tuple[int, ...], int] = {}
            for k, spans in enumerate(ds.grounding[i]):  # type: ignore[index]
                for s in spans or []:
                    if not s.instances:
                        continue
                    if s.instances not in keys:
                        union = cells[list(s.instances)].max(axis=0)
                        if union.sum() <= 0:
                            continue
                        keys[s.instances] = len(regions[i])
                        regions[i].append(union / union.sum())
                    end = min(s.end, max_len - 2)  # step t emits token t
                    self.token_region[i][k][s.start : end] = keys[s.instances]
                    self.grounded_words += max(end - s.start, 0)
        r = max([len(x) for x in regions] + [1])
        self.regions = np.zeros((n, r, grid * grid), np.float32)
        for i, rs in enumerate(regions):
            if rs:
                self.regions[i, : len(rs)] = np.stack(rs)


def _vocabulary(ds: Dataset, train: np.ndarray) -> tuple[list[str], int]:
    caps = [c for i in train for c in ds.captions[i]]
    if not caps:
        raise ConfigError(f"{ds.root}: no captions, so the captioner cannot be trained on it")
    return Vocabulary.build(caps).words, min(max(len(tokenize(c)) for c in caps) + 2, 40)


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
    sentinel: bool | None = None,
    grounding_weight: float | None = None,
    synonyms: dict[str, list[str]] | None = None,
) -> list[dict[str, float]]:
    """Train the captioner with teacher forcing, one random reference per image per step;
    keep the epoch with the best validation score."""
    keras.utils.set_random_seed(seed)
    cfg, ds = open_config(out, data, size, channels)
    cc = cfg.captioner or CaptionerConfig(sentinel=(attention or "bahdanau") != "none")
    cc.attention = attention or cc.attention
    cc.sentinel = cc.sentinel if sentinel is None else sentinel
    cc.grounding_weight = cc.grounding_weight if grounding_weight is None else grounding_weight
    cc.synonyms = synonyms if synonyms is not None else cc.synonyms
    cc.epochs = epochs or cc.epochs
    cc.grid = grid_size(cc, cfg.image)
    keep = np.array([i for i, c in enumerate(ds.captions) if c], np.int64)
    train_k, val_k = split_indices(len(keep), cc.validation_split, seed)
    train, val = keep[train_k], keep[val_k]
    cc.vocab, cc.max_len = _vocabulary(ds, train)
    cfg.captioner = cc
    cc.__post_init__()  # re-validate: a sentinel needs attention
    explicit = [
        [
            bool(
                ds.instances and ds.instances[i] and ds.grounding and ds.grounding[i][k] is not None
            )
            for k in range(len(caps))
        ]
        for i, caps in enumerate(ds.captions)
    ]
    ds.ground_by_name(cc.synonyms)
    vocab = Vocabulary(cc.vocab)
    encoded = [[vocab.encode(c, cc.max_len) for c in caps] for caps in ds.captions]
    targets = Targets(ds, encoded, cc.grid, cc.max_len, explicit)
    supervised = cc.grounding_weight > 0 and targets.grounded_words > 0
    log.info(
        "captioner[%s%s]: %d training, %d validation images; %s",
        cc.attention,
        "+sentinel" if cc.sentinel else "",
        len(train),
        len(val),
        f"attention supervised on {targets.grounded_words} grounded words"
        if supervised
        else "no instance regions: attention unsupervised",
    )
    cap = Captioner(cc, cfg.image)
    loop = EpochLoop(
        f"captioner[{cc.attention}]",
        loop_config(cc, epochs, max_steps, progress),
        len(train) // cc.batch_size,
    )
    rng = np.random.default_rng(seed)

    def batches(_: int) -> Iterator[Batch]:
        for idx in _shuffled(len(train), cc.batch_size, rng):
            rows = train[idx]
            pick = [rng.integers(len(encoded[i])) for i in rows]
            yield (
                ds.images[rows],
                np.array([encoded[i][k] for i, k in zip(rows, pick, strict=True)], np.int32),
                targets.regions[rows],
                np.stack([targets.token_region[i][k] for i, k in zip(rows, pick, strict=True)]),
            )

    variables = cap.trainable_variables
    weight = cc.grounding_weight if supervised else 0.0
    # Data without instance regions trains on shifted, re-lit views (never mirrored: captions
    # say left and right); with regions to point at, a shift would move the targets off their
    # objects, so such data (every variant of an ablation on it) trains on the images as is.
    shifted = targets.grounded_words == 0

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor, seqs: tf.Tensor, reg: tf.Tensor, tok: tf.Tensor) -> dict:
        if shifted:
            x = jitter(x, mirror=False)
        with tf.GradientTape() as tape:
            t = cap.loss(x, seqs, reg, tok, training=True)
            loss = t.ce + cc.alpha_c * t.penalty + weight * (t.grounding + t.looking)
        loop.optimizer.apply(tape.gradient(loss, variables), variables)
        extra = {"grounding": t.grounding, "looking": t.looking} if supervised else {}
        return {"loss": loss, "ce": t.ce, "attention_penalty": t.penalty, **extra}

    def validate() -> dict[str, float]:
        return _validate(cap, ds, val, encoded, targets, cfg.domain, supervised)

    Path(out).mkdir(parents=True, exist_ok=True)

    def save() -> None:
        save_captioner(cap, out)
        cfg.save(out)

    history = loop.run(
        batches, train_step, [cap.encoder, cap.step], save, validate if len(val) else None
    )
    save_history(
        out,
        "captioner",
        history,
        {
            "attention": cc.attention,
            "sentinel": cc.sentinel,
            "images": len(train),
            "validation": len(val),
            "grounded_words": targets.grounded_words if supervised else 0,
        },
    )
    return history


def _validate(
    cap: Captioner,
    ds: Dataset,
    val: np.ndarray,
    encoded: list[list[list[int]]],
    targets: Targets,
    domain: str,
    supervised: bool,
) -> dict[str, float]:
    """Validation loss (first reference, teacher forced), greedy BLEU-4 and the pointing game
    of grounded words on up to VALIDATION_IMAGES images. The score to maximise is BLEU-4, times
    (1 + the pointing rate) where attention is `supervised`, minus a hundredth of the loss (a
    tie-break once captions are right). The product, not a sum: pointing is measured on the
    few located words an untrained decoder emits, so an early epoch with poor captions can
    point almost perfectly, and a sum would prefer it to every later one. Unsupervised
    attention is chosen on its captions, as on data without regions: pointing is what
    supervision adds, not a target of its own."""
    ce, n = 0.0, 0
    for i in range(0, len(val), 256):
        rows = val[i : i + 256]
        t = cap.loss(
            tf.constant(ds.images[rows]),
            tf.constant(np.array([encoded[j][0] for j in rows], np.int32)),
            tf.constant(targets.regions[rows]),
            tf.constant(np.stack([targets.token_region[j][0] for j in rows])),
            training=False,
        )
        ce, n = ce + float(t.ce) * len(rows), n + len(rows)
    sub = val[:VALIDATION_IMAGES]
    generated = cap.caption(ds.images[sub], beam_width=1)
    bleu = metrics.caption_scores([ds.captions[j] for j in sub], [g.text for g in generated])
    out = {"loss": ce / max(n, 1), "BLEU-4": bleu["BLEU-4"]}
    score = bleu["BLEU-4"] - 0.01 * out["loss"]
    report = score_captions(domain, ds.subset(sub), generated, cap.grid)
    if report is not None and targets.grounded_words:
        classes = report["classes"].values()
        total = sum(c["n"] for c in classes)
        if total:
            out["pointing"] = sum(c["pointing"] * c["n"] for c in classes) / total
            score += bleu["BLEU-4"] * out["pointing"] if supervised else 0.0
    out["score"] = score
    return out
