"""The text-image model of semantic search: query words and image regions in one space.

The image side reuses the captioner's encoder, frozen: its grid of regions h1..hn already
says what is where (it was trained, with supervised attention, to name each thing at its
place), and a projection maps each region into the shared space. The text side is small:
word embeddings and two convolutions over neighbouring words (so "red" in "red circle" is a
red circle, not any red thing), one vector per word. The score is late interaction (FILIP,
Yao et al. 2021): each content word takes its best-matching region, and the words' scores are
averaged; each word's similarities over the regions are its map on the image.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from models.config import EmbedderConfig


def build_text_encoder(cfg: EmbedderConfig) -> keras.Model:
    """Token ids (max_tokens,) -> unit vectors per token (max_tokens, dim); id 0 pads."""
    tokens = keras.Input((cfg.max_tokens,), dtype="int32", name="tokens")
    x = layers.Embedding(len(cfg.vocab), cfg.embed_dim, name="word")(tokens)
    y = layers.Conv1D(cfg.filters, 3, padding="same", activation="relu", name="context1")(x)
    y = layers.Conv1D(cfg.filters, 3, padding="same", activation="relu", name="context2")(y)
    y = layers.Concatenate()([x, y])
    words = layers.Dense(cfg.dim, name="project")(y)
    words = layers.UnitNormalization(axis=-1, name="words")(words)
    return keras.Model(tokens, words, name="text_encoder")


def build_region_projection(cfg: EmbedderConfig, features: int, regions: int) -> keras.Model:
    """Captioner regions (n, F) -> unit vectors in the shared space (n + 1, dim).

    The last vector is the whole image, read from the grid's layout: words that name no one
    place ("single", "above", "right of") match it, while a region vector only knows its
    own neighbourhood. Its head's size is the config's (`layout_cells`, `layout_hidden`): the
    shapes model needs two wide layers, since a relation is a conjunction over cells (a
    square, and something in a column to its left); with one of 96 it ranks "single" and
    "square right" poorly. On chest the wider head does worse (on "no" and "normal"), so the
    default stays one layer."""
    inp = keras.Input((regions, features), name="regions")
    x = layers.Dense(cfg.dim * 2, activation="relu", name="region_hidden")(inp)
    x = layers.Dense(cfg.dim, name="region_project")(x)
    g = layers.Dense(cfg.layout_cells, activation="relu", name="layout_cells")(inp)
    g = layers.Flatten()(g)
    for k, width in enumerate(cfg.layout_hidden):
        g = layers.Dense(width, activation="relu", name=f"layout_hidden{k or ''}")(g)
    g = layers.Reshape((1, cfg.dim))(layers.Dense(cfg.dim, name="layout_project")(g))
    out = layers.UnitNormalization(axis=-1)(layers.Concatenate(axis=1)([x, g]))
    return keras.Model(inp, out, name="region_projection")


def build_image_embedder(encoder: keras.Model, projection: keras.Model) -> keras.Model:
    """Image -> region vectors: the captioner's encoder (its regions) and the projection, as one
    graph for the device."""
    inp = keras.Input(encoder.inputs[0].shape[1:], name="image")
    regions = encoder(inp)[0]
    return keras.Model(inp, projection(regions), name="image_embedder")


def late_interaction(
    words: keras.KerasTensor, content: keras.KerasTensor, regions: keras.KerasTensor
) -> keras.KerasTensor:
    """(Bt, T, D) words, (Bt, T) content mask, (Bi, n, D) regions -> (Bt, Bi) scores: each
    content word's best region similarity, averaged over the content words."""
    sim = ops.einsum("atd,bnd->abtn", words, regions)
    best = ops.max(sim, axis=-1)
    mask = ops.expand_dims(content, 1)
    return ops.sum(best * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)
