"""`s3e-train fit embedder`: the text-image model of semantic search, on a models folder whose
captioner is trained (its encoder is the frozen image side).

Each step takes a batch of images and one text per image: a whole reference, or (half the
time) a short span of one, 1-3 words, as a person searches. A text is relevant to every image
in the batch one of whose references contains it, and the loss is a contrastive one with all
of them as positives (both ways). Where the data ties words to instances, a word's similarity
over the regions is also taught to peak on its instance, so the map of a query word points at
what it names. The validation score is the search metric itself: precision@10 of single words.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from core.semantic import content_mask, token_ids
from core.tokens import STOP, tokenize
from models.captioner_training import Targets
from models.config import ConfigError, EmbedderConfig
from models.data.dataset import Dataset
from models.embedder import build_region_projection, build_text_encoder
from models.queries import Ranker, build_queries, precision_report
from models.search_eval import keras_encoder
from models.store import FILES, load_captioner
from models.training import (
    Batch,
    EpochLoop,
    _shuffled,
    loop_config,
    open_config,
    save_history,
    split_indices,
)

log = logging.getLogger(__name__)
PAD, UNK = "<pad>", "<unk>"
GROUNDING_TEMPERATURE = 0.1


class Texts:
    """Token ids of every reference, and which of them contain which word sequences."""

    def __init__(self, ds: Dataset, vocab: list[str], max_tokens: int) -> None:
        self.index = {w: i for i, w in enumerate(vocab)}
        self.max_tokens = max_tokens
        self.tokens = [[tokenize(c) for c in caps] for caps in ds.captions]
        self.joined = [[f" {' '.join(t)} " for t in caps] for caps in self.tokens]

    def ids(self, words: list[str]) -> np.ndarray:
        return token_ids(words, self.index, self.max_tokens)

    def content(self, words: list[str]) -> np.ndarray:
        return content_mask(words, self.max_tokens)

    def contains(self, image: int, words: list[str]) -> bool:
        needle = f" {' '.join(words)} "
        return any(needle in ref for ref in self.joined[image])


def vocabulary(ds: Dataset, rows: np.ndarray) -> list[str]:
    """The training references' words, most frequent first (typo correction prefers them)."""
    counts = Counter(w for i in rows for c in ds.captions[i] for w in tokenize(c))
    words = sorted(counts, key=lambda w: (-counts[w], w))
    if not words:
        raise ConfigError(f"{ds.root}: no captions, so the embedder cannot be trained on it")
    return [PAD, UNK, *words]


def fit_embedder(
    data: Path,
    out: Path,
    epochs: int | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    size: int | None = None,
    channels: int | None = None,
    progress: bool = True,
    layout_cells: int | None = None,
    layout_hidden: list[int] | None = None,
) -> list[dict[str, float]]:
    """Train the text side and the region projection; keep the best validation epoch.
    `layout_cells` and `layout_hidden` size the head of the whole-image vector (default: the
    folder's config, else `EmbedderConfig`'s)."""
    keras.utils.set_random_seed(seed)
    cfg, ds = open_config(out, data, size, channels)
    if cfg.captioner is None:
        raise ConfigError(f"{out}: train the captioner first (its encoder is the image side)")
    ec = cfg.embedder or EmbedderConfig()
    ec = dataclasses.replace(  # a new one, so the head's widths are checked
        ec,
        epochs=epochs or ec.epochs,
        layout_cells=ec.layout_cells if layout_cells is None else layout_cells,
        layout_hidden=ec.layout_hidden if layout_hidden is None else layout_hidden,
    )
    train, val = split_indices(len(ds), ec.validation_split, seed)
    ec.vocab = vocabulary(ds, train)
    cfg.embedder = ec
    regions = _regions(out, cfg, ds)
    texts = Texts(ds, ec.vocab, ec.max_tokens)
    longest = max(len(t) for caps in texts.tokens for t in caps) + 2
    targets = Targets(
        ds,
        [[[0] * longest] * len(c) for c in ds.captions],
        cfg.grid,
        longest,
        [[False] * len(c) for c in ds.captions],
    )
    text_model = build_text_encoder(ec)
    projection = build_region_projection(ec, regions.shape[2], regions.shape[1])
    log_temp = keras.Variable(np.float32(np.log(0.07)), dtype="float32", name="log_temperature")
    loop = EpochLoop(
        "embedder", loop_config(ec, epochs, max_steps, progress), len(train) // ec.batch_size
    )
    rng = np.random.default_rng(seed)

    def batches(_: int) -> Iterator[Batch]:
        for idx in _shuffled(len(train), ec.batch_size, rng):
            yield _batch(train[idx], ds, texts, targets, regions, ec, rng)

    step = _train_step(text_model, projection, log_temp, ec, loop)

    queries = build_queries([ds.captions[i] for i in val], None, ec.vocab).words

    def validate() -> dict[str, float]:
        images = np.asarray(projection(regions[val], training=False))
        ranker = Ranker(keras_encoder(text_model, ec.vocab, ec.max_tokens), images)
        p10 = precision_report(ranker.rank, {"words": queries}).get("words", {}).get("p_at_10", 0)
        return {"p_at_10": p10, "score": p10}

    Path(out).mkdir(parents=True, exist_ok=True)

    def save() -> None:
        text_model.save_weights(Path(out) / FILES["embedder"][0])
        projection.save_weights(Path(out) / FILES["embedder"][1])
        cfg.save(out)

    history = loop.run(
        batches, step, [text_model, projection], save, validate if len(val) else None
    )
    save_history(
        out,
        "embedder",
        history,
        {"images": len(train), "validation": len(val), "grounded_words": targets.grounded_words},
    )
    return history


def _regions(out: Path, cfg: Any, ds: Dataset) -> np.ndarray:
    """The frozen captioner encoder's regions of every image, computed once."""
    encoder = load_captioner(out, cfg).encoder
    parts = [
        encoder(tf.constant(ds.images[i : i + 256]), training=False)[0].numpy()
        for i in range(0, len(ds), 256)
    ]
    return np.concatenate(parts).astype(np.float32)


def _batch(
    rows: np.ndarray,
    ds: Dataset,
    texts: Texts,
    targets: Targets,
    regions: np.ndarray,
    ec: EmbedderConfig,
    rng: np.random.Generator,
) -> Batch:
    """Texts (whole references or short spans), their positives among the batch's images, and
    each word's region target (-1: none)."""
    ids, content, words_of, region_of = [], [], [], []
    for i in rows:
        k = int(rng.integers(len(texts.tokens[i])))
        words = texts.tokens[i][k]
        start, end = 0, len(words)
        if rng.random() < ec.span_share and words:
            n = int(rng.integers(1, 4))
            start = int(rng.integers(0, max(len(words) - n, 0) + 1))
            end = min(start + n, len(words))
        span = words[start:end][: ec.max_tokens]
        if not any(w not in STOP for w in span):
            span, start = words[: ec.max_tokens], 0
        ids.append(texts.ids(span))
        content.append(texts.content(span))
        words_of.append(span)
        reg = targets.token_region[i][k][start : start + ec.max_tokens]
        reg = np.pad(reg, (0, ec.max_tokens - len(reg)), constant_values=-1)
        region_of.append(np.where(reg >= 0, reg, -1).astype(np.int32))
    pos = np.array([[texts.contains(j, w) for j in rows] for w in words_of], np.float32)
    np.fill_diagonal(pos, 1.0)
    return (
        np.stack(ids),
        np.stack(content),
        regions[rows],
        pos,
        targets.regions[rows],
        np.stack(region_of),
    )


def _train_step(
    text_model: keras.Model,
    projection: keras.Model,
    log_temp: keras.Variable,
    ec: EmbedderConfig,
    loop: EpochLoop,
) -> Any:
    variables = [*text_model.trainable_variables, *projection.trainable_variables, log_temp]

    @tf.function(reduce_retracing=True)
    def train_step(
        ids: tf.Tensor,
        content: tf.Tensor,
        feats: tf.Tensor,
        pos: tf.Tensor,
        reg_targets: tf.Tensor,
        region_of: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            words = text_model(ids, training=True)
            regs = projection(feats, training=True)
            sim = tf.einsum("atd,bnd->abtn", words, regs)
            best = tf.reduce_max(sim, -1)
            mask = content[:, None, :]
            scores = tf.reduce_sum(best * mask, -1) / tf.maximum(tf.reduce_sum(mask, -1), 1.0)
            logits = scores / tf.exp(log_temp)
            t2i = _multi_positive(logits, pos)
            i2t = _multi_positive(tf.transpose(logits), tf.transpose(pos))
            ground = _grounding(sim, reg_targets, region_of)
            loss = (t2i + i2t) / 2 + ec.grounding_weight * ground
        loop.optimizer.apply(tape.gradient(loss, variables), variables)
        return {
            "loss": loss,
            "contrastive": (t2i + i2t) / 2,
            "grounding": ground,
            "temperature": tf.exp(log_temp),
        }

    return train_step


def _multi_positive(logits: tf.Tensor, pos: tf.Tensor) -> tf.Tensor:
    """-log of the probability mass on the positives, averaged over rows."""
    log_all = tf.reduce_logsumexp(logits, -1)
    log_pos = tf.reduce_logsumexp(logits + tf.math.log(pos + 1e-12), -1)
    return tf.reduce_mean(log_all - log_pos)


def _grounding(sim: tf.Tensor, reg_targets: tf.Tensor, region_of: tf.Tensor) -> tf.Tensor:
    """Each grounded word's similarities over its own image's regions, as a softmax, against
    the coverage of the instance it names."""
    b = tf.shape(sim)[0]
    own = tf.gather_nd(sim, tf.stack([tf.range(b), tf.range(b)], 1))  # (B, T, n)
    target = tf.gather(reg_targets, tf.maximum(region_of, 0), batch_dims=1)  # (B, T, n)
    target = tf.pad(target, [[0, 0], [0, 0], [0, 1]])  # the whole-image vector: never the place
    logp = tf.nn.log_softmax(own / GROUNDING_TEMPERATURE, -1)
    xent = -tf.reduce_sum(target * logp, -1)
    grounded = tf.cast(region_of >= 0, tf.float32)
    return tf.reduce_sum(xent * grounded) / tf.maximum(tf.reduce_sum(grounded), 1.0)
