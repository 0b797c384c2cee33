"""A small convolutional VAE: its latents label images, score anomalies and find neighbours.

The latent-space side (clusters, anomaly calibration) is numpy-only and lives in
`models.latent`, so the device uses it without TensorFlow.
"""

from __future__ import annotations

import keras
from keras import layers

from models.config import ImageConfig, VAEConfig


def build_vae_encoder(cfg: VAEConfig, image: ImageConfig) -> keras.Model:
    """Image -> (mu, log_var) of the latent posterior."""
    inp = keras.Input((image.size, image.size, image.channels), name="image")
    x = inp
    for f in cfg.filters:
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(cfg.dense_units, activation="relu")(x)
    mu = layers.Dense(cfg.latent_dim, name="mu")(x)
    log_var = layers.Dense(cfg.latent_dim, name="log_var")(x)
    return keras.Model(inp, [mu, log_var], name="vae_encoder")


def build_vae_decoder(cfg: VAEConfig, image: ImageConfig) -> keras.Model:
    """Latent z -> reconstructed image in [0, 1]."""
    side = image.size // 2 ** len(cfg.filters)
    z = keras.Input((cfg.latent_dim,), name="z")
    x = layers.Dense(cfg.dense_units, activation="relu")(z)
    x = layers.Dense(side * side * cfg.filters[-1], activation="relu")(x)
    x = layers.Reshape((side, side, cfg.filters[-1]))(x)
    for f in reversed(cfg.filters):
        x = layers.UpSampling2D(interpolation="nearest")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    out = layers.Conv2D(
        image.channels, 3, padding="same", activation="sigmoid", name="reconstruction"
    )(x)
    return keras.Model(z, out, name="vae_decoder")
