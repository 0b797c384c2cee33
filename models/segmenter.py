"""A small U-Net: per-pixel classes, summarised as labels with area fractions."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from models.config import ImageConfig, SegmenterConfig


def _block(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    for _ in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
    return x


def build_segmenter(cfg: SegmenterConfig, image: ImageConfig) -> keras.Model:
    """Image -> per-pixel class logits (H, W, classes).

    Up-sampling is nearest-neighbour repetition plus convolution rather than a transposed
    convolution (slow when dynamic-range quantized); in TFLite it lowers to RESHAPE + TILE,
    both on the GPU delegate's list.
    """
    inp = keras.Input((image.size, image.size, image.channels), name="image")
    skips, x = [], inp
    for f in cfg.filters[:-1]:
        x = _block(x, f)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = _block(x, cfg.filters[-1])
    for f, skip in zip(reversed(cfg.filters[:-1]), reversed(skips), strict=True):
        x = layers.UpSampling2D(interpolation="nearest")(x)
        x = layers.Concatenate()([x, skip])
        x = _block(x, f)
    logits = layers.Conv2D(len(cfg.class_names), 1, name="logits")(x)
    return keras.Model(inp, logits, name="segmenter")


def area_fractions(mask: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Fraction of the image each class covers, for classes present, largest first."""
    counts = np.bincount(mask.reshape(-1), minlength=len(class_names))[: len(class_names)]
    fractions = {class_names[i]: float(c) / mask.size for i, c in enumerate(counts) if c}
    return dict(sorted(fractions.items(), key=lambda kv: -kv[1]))
