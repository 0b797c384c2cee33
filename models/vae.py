"""A small convolutional VAE that also names what it sees: semi-supervised labels (Kingma et
al. 2014, M2: a label head q(y|x) beside q(z|x), a decoder p(x|z, y)), an anomaly score, and a
latent for "similar images".

The latent-space side (label thresholds, anomaly and out-of-domain calibration) is numpy-only
and lives in `core.latent`, so the device uses it without TensorFlow.
"""

from __future__ import annotations

import keras
from keras import layers

from models.config import ImageConfig, VAEConfig


def build_vae_encoder(cfg: VAEConfig, image: ImageConfig) -> keras.Model:
    """Image -> (mu, log_var) of the latent posterior, and label logits when it has labels."""
    inp = keras.Input((image.size, image.size, image.channels), name="image")
    x = inp
    for f in cfg.filters:
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(x)
    h = layers.Dense(cfg.dense_units, activation="relu")(layers.Flatten()(x))
    outputs = [
        layers.Dense(cfg.latent_dim, name="mu")(h),
        layers.Dense(cfg.latent_dim, name="log_var")(h),
    ]
    if cfg.labels:
        outputs.append(_label_head(cfg, inp))
    return keras.Model(inp, outputs, name="vae_encoder")


def _label_head(cfg: VAEConfig, x: keras.KerasTensor) -> keras.KerasTensor:
    """q(y|x), M2's classifier, a network of its own: labels say what is present, not where,
    so convolutions (with batch norm) end in the strongest and the mean response anywhere. The
    same weights serve every position, which is what lets a few hundred labelled images teach
    them; a trunk shared with the VAE's unnormalised encoder learns them far more slowly."""
    for i, (f, stride) in enumerate(((32, 2), (64, 2), (64, 1), (64, 1))):
        x = layers.Conv2D(
            f, 3, strides=stride, padding="same", use_bias=False, name=f"label_conv{i}"
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"label_bn{i}")(x)
        x = layers.ReLU()(x)
    pooled = layers.Concatenate()(
        [layers.GlobalMaxPooling2D()(x), layers.GlobalAveragePooling2D()(x)]
    )
    return layers.Dense(len(cfg.labels), name="label_logits")(pooled)


def build_vae_decoder(cfg: VAEConfig, image: ImageConfig) -> keras.Model:
    """Latent z (and label probabilities, when it has labels) -> image in [0, 1]."""
    side = image.size // 2 ** len(cfg.filters)
    z = keras.Input((cfg.latent_dim,), name="z")
    inputs, x = [z], z
    if cfg.labels:
        y = keras.Input((len(cfg.labels),), name="labels")
        inputs.append(y)
        x = layers.Concatenate()([z, y])
    x = layers.Dense(cfg.dense_units, activation="relu")(x)
    x = layers.Dense(side * side * cfg.filters[-1], activation="relu")(x)
    x = layers.Reshape((side, side, cfg.filters[-1]))(x)
    for f in reversed(cfg.filters):
        x = layers.UpSampling2D(interpolation="nearest")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    out = layers.Conv2D(
        image.channels, 3, padding="same", activation="sigmoid", name="reconstruction"
    )(x)
    return keras.Model(inputs if len(inputs) > 1 else z, out, name="vae_decoder")
