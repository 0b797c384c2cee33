"""Show, Attend and Tell: a CNN encoder over a grid of regions and an LSTM decoder with attention.

The decoder is built as a one-step Keras model (token, h, c, regions -> logits, h', c', attention)
so the same graph serves teacher-forced training (unrolled in a loop), numpy beam search, and the
converter, which exports exactly this step to TFLite for the device.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from core.decoding import beam_search, log_softmax
from core.tokens import Vocabulary, detokenize
from models.config import CaptionerConfig, ImageConfig, grid_size


class BahdanauAttention(layers.Layer):
    """Additive attention: score_i = v . tanh(k_i + W s); keys k_i = W_k h_i from the encoder."""

    def __init__(self, units: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.w_state = layers.Dense(units, name="w_state")
        self.v = layers.Dense(1, name="v")

    def call(
        self, regions: tf.Tensor, keys: tf.Tensor, state: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        hidden = ops.tanh(keys + ops.expand_dims(self.w_state(state), 1))
        alpha = ops.softmax(ops.squeeze(self.v(hidden), -1), axis=-1)
        return ops.sum(regions * ops.expand_dims(alpha, -1), axis=1), alpha


class LuongAttention(layers.Layer):
    """Multiplicative attention, Luong's "general" score: score_i = h_i^T W s = k_i . s."""

    def call(
        self, regions: tf.Tensor, keys: tf.Tensor, state: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        alpha = ops.softmax(ops.sum(keys * ops.expand_dims(state, 1), axis=-1), axis=-1)
        return ops.sum(regions * ops.expand_dims(alpha, -1), axis=1), alpha


class MeanContext(layers.Layer):
    """No attention: the mean region vector, with uniform weights reported as the "attention"."""

    def call(
        self, regions: tf.Tensor, keys: tf.Tensor, state: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        alpha = ops.ones_like(regions[..., 0]) / ops.cast(ops.shape(regions)[1], regions.dtype)
        return ops.mean(regions, axis=1), alpha


def _keys(cfg: CaptionerConfig, regions: keras.KerasTensor) -> keras.KerasTensor:
    """Per-region attention keys, computed once per image rather than at every word."""
    if cfg.attention == "bahdanau":
        return layers.Dense(cfg.attention_dim, name="attention_keys")(regions)
    if cfg.attention == "luong":
        return layers.Dense(cfg.units, use_bias=False, name="attention_keys")(regions)
    return layers.Identity(name="attention_keys")(regions)


def _attention(cfg: CaptionerConfig) -> layers.Layer:
    if cfg.attention == "bahdanau":
        return BahdanauAttention(cfg.attention_dim, name="attention")
    if cfg.attention == "luong":
        return LuongAttention(name="attention")
    return MeanContext(name="attention")


def _keys_dim(cfg: CaptionerConfig) -> int:
    return {"bahdanau": cfg.attention_dim, "luong": cfg.units}.get(cfg.attention, cfg.filters[-1])


def build_encoder(cfg: CaptionerConfig, image: ImageConfig) -> keras.Model:
    """Image -> (regions (n, F), attention keys (n, K), h0, c0); n = (size / 2**len(filters))**2."""
    inp = keras.Input((image.size, image.size, image.channels), name="image")
    x = inp
    for f in cfg.filters:
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        # Moving statistics that keep up within an epoch of a small data set, so validation
        # (inference mode) sees what training does.
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    grid = grid_size(cfg, image)
    regions = layers.Reshape((grid * grid, cfg.filters[-1]), name="regions")(x)
    mean = layers.GlobalAveragePooling1D()(regions)
    h0 = layers.Dense(cfg.units, activation="tanh", name="init_h")(mean)
    c0 = layers.Dense(cfg.units, activation="tanh", name="init_c")(mean)
    return keras.Model(inp, [regions, _keys(cfg, regions), h0, c0], name="captioner_encoder")


def _sentinel(
    cfg: CaptionerConfig, emb: keras.KerasTensor, h: keras.KerasTensor, c: keras.KerasTensor
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The visual sentinel (Lu et al., "Knowing When to Look", CVPR 2017): s = g * tanh(c),
    g = sigmoid(W [emb; h]), offered to the attention as one more "region" (a value and a
    key), so the decoder can put its attention on what it already knows instead of the image.
    """
    g = layers.Dense(cfg.units, activation="sigmoid", name="sentinel_gate")(
        layers.Concatenate()([emb, h])
    )
    s = g * ops.tanh(c)
    value = layers.Dense(cfg.filters[-1], name="sentinel_value")(s)
    key = layers.Dense(_keys_dim(cfg), name="sentinel_key")(s)
    return ops.expand_dims(value, 1), ops.expand_dims(key, 1)


def build_step(cfg: CaptionerConfig, image: ImageConfig, onehot: bool = False) -> keras.Model:
    """(token, h, c, regions, keys) -> (logits, h', c', alpha, beta): one decoder step.

    alpha (n) is the attention over the regions and beta the share given to the sentinel
    (0 without one): alpha sums to 1 - beta, and 1 - beta is how much the word relied on the
    image. With `onehot`, the token arrives as a one-hot float vector and the embedding is a
    bias-free Dense layer holding the same matrix: a GATHER becomes a FULLY_CONNECTED, which
    the TFLite GPU delegate runs. The layers are otherwise identical, in the same order, so
    weights copy.
    """
    grid = grid_size(cfg, image)
    n, feat = grid * grid, cfg.filters[-1]
    if onehot:
        token = keras.Input((len(cfg.vocab),), name="token_onehot")
        emb = layers.Dense(cfg.embed_dim, use_bias=False, name="embedding")(token)
    else:
        token = keras.Input((), dtype="int32", name="token")
        emb = layers.Embedding(len(cfg.vocab), cfg.embed_dim, name="embedding")(token)
    h = keras.Input((cfg.units,), name="h")
    c = keras.Input((cfg.units,), name="c")
    regions = keras.Input((n, feat), name="regions")
    keys = keras.Input((n, _keys_dim(cfg)), name="keys")
    if cfg.sentinel:
        s_value, s_key = _sentinel(cfg, emb, h, c)
        values = layers.Concatenate(axis=1)([regions, s_value])
        all_keys = layers.Concatenate(axis=1)([keys, s_key])
        context, weights = _attention(cfg)(values, all_keys, h)
        # Sliced as 3-D without dropping an axis: the TFLite GPU delegate takes no other slice.
        w3 = ops.expand_dims(weights, 1)
        alpha = ops.reshape(w3[:, :, :n], (-1, n))
        beta = ops.reshape(w3[:, :, n:], (-1,))
    else:
        context, alpha = _attention(cfg)(regions, keys, h)
        beta = ops.zeros_like(alpha[:, 0])
    gate = layers.Dense(feat, activation="sigmoid", name="context_gate")(h)
    context = context * gate
    x = layers.Concatenate()([emb, context])
    _, (h_new, c_new) = layers.LSTMCell(cfg.units, name="lstm")(x, [h, c])
    out = layers.Concatenate()([h_new, context, emb])
    out = layers.Dropout(cfg.dropout)(out)
    logits = layers.Dense(len(cfg.vocab), name="logits")(out)
    return keras.Model(
        [token, h, c, regions, keys],
        [
            logits,
            layers.Identity(name="h_out")(h_new),
            layers.Identity(name="c_out")(c_new),
            layers.Identity(name="alpha")(alpha),
            layers.Identity(name="beta")(beta),
        ],
        name="captioner_step",
    )


class Caption(NamedTuple):
    """A generated caption with the attention behind each word."""

    text: str
    tokens: list[str]
    score: float
    attention: np.ndarray
    """(len(tokens), grid, grid) attention weights over the regions, one map per token; each
    sums to the word's `visual` share."""
    visual: np.ndarray
    """(len(tokens),): 1 - the sentinel's share, how much each word relied on the image."""


def split_attention(att: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-step [alpha | beta] rows (as beam search keeps them) -> (maps, visual shares)."""
    n = grid * grid
    return att[:, :n].reshape(len(att), grid, grid), 1.0 - att[:, n]


class LossTerms(NamedTuple):
    ce: tf.Tensor
    penalty: tf.Tensor
    """Show, Attend and Tell's doubly stochastic penalty: each region's attention summed
    over the caption should come near 1."""
    grounding: tf.Tensor
    """Cross-entropy of the word's region (normalised attention) against the region of the
    thing it names (Liu et al., AAAI 2017, strong supervision), over grounded words."""
    looking: tf.Tensor
    """The sentinel's share where the data says whether a word names a region: -log(1 - beta)
    for a word that does (it must look), -log(beta) for one that names nothing (it need not;
    only captions with explicit grounding, where every unnamed word is known to be so)."""


class Captioner:
    """Encoder + decoder step + vocabulary: the training graph and the decoding API."""

    def __init__(self, cfg: CaptionerConfig, image: ImageConfig) -> None:
        self.cfg, self.image = cfg, image
        self.vocab = Vocabulary(cfg.vocab)
        self.encoder = build_encoder(cfg, image)
        self.step = build_step(cfg, image)
        self.grid = grid_size(cfg, image)
        self._encode = tf.function(lambda x: self.encoder(x, training=False), reduce_retracing=True)
        self._step = tf.function(
            lambda t, h, c, r, k: self.step([t, h, c, r, k], training=False), reduce_retracing=True
        )

    def device_step(self) -> keras.Model:
        """The decoder step with a one-hot token input and this step's weights (for export)."""
        step = build_step(self.cfg, self.image, onehot=True)
        trained = [layer for layer in self.step.layers if layer.weights]
        target = [layer for layer in step.layers if layer.weights]
        for src, dst in zip(trained, target, strict=True):
            dst.set_weights(src.get_weights())
        return step

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return self.encoder.trainable_variables + self.step.trainable_variables

    def loss(
        self,
        images: tf.Tensor,
        seqs: tf.Tensor,
        regions_target: tf.Tensor,
        token_region: tf.Tensor,
        training: bool,
    ) -> LossTerms:
        """Teacher-forced losses. `regions_target` (B, R, n): per image, the normalised cell
        coverage of each region its captions name; `token_region` (B, T-1): which of them the
        word produced at each step names, -1 for none, -2 for none where the caption's grounding
        is explicit (the word is known to name nothing)."""
        regions, keys, h, c = self.encoder(images, training=training)
        mask = tf.cast(seqs[:, 1:] > 0, tf.float32)
        grounded = tf.cast(token_region >= 0, tf.float32) * mask
        unnamed = tf.cast(token_region == -2, tf.float32) * mask
        ce_sum = grounding_sum = looking_sum = tf.constant(0.0)
        alpha_sum = tf.zeros_like(regions[..., 0])
        for t in range(seqs.shape[1] - 1):
            logits, h, c, alpha, beta = self.step(
                [seqs[:, t], h, c, regions, keys], training=training
            )
            ce = keras.losses.sparse_categorical_crossentropy(
                seqs[:, t + 1], logits, from_logits=True
            )
            ce_sum += tf.reduce_sum(ce * mask[:, t])
            alpha_sum += alpha * mask[:, t : t + 1]
            target = tf.gather(regions_target, tf.maximum(token_region[:, t], 0), batch_dims=1)
            spatial = alpha / (tf.reduce_sum(alpha, -1, keepdims=True) + 1e-6)
            xent = -tf.reduce_sum(target * tf.math.log(spatial + 1e-6), -1)
            grounding_sum += tf.reduce_sum(xent * grounded[:, t])
            looking_sum += tf.reduce_sum(
                -tf.math.log(1.0 - beta + 1e-6) * grounded[:, t]
                - tf.math.log(beta + 1e-6) * unnamed[:, t]
            )
        n_grounded = tf.maximum(tf.reduce_sum(grounded), 1.0)
        return LossTerms(
            ce=ce_sum / tf.maximum(tf.reduce_sum(mask), 1.0),
            penalty=tf.reduce_mean(tf.square(1.0 - alpha_sum)),
            grounding=grounding_sum / n_grounded,
            looking=looking_sum / tf.maximum(tf.reduce_sum(grounded + unnamed), 1.0),
        )

    def _step_fn(self, regions: np.ndarray, keys: np.ndarray, k: int):
        tiled_r, tiled_k = tf.constant(np.repeat(regions, k, 0)), tf.constant(np.repeat(keys, k, 0))

        def step(tokens: np.ndarray, states: tuple[np.ndarray, ...]):
            logits, h, c, alpha, beta = self._step(
                tf.constant(tokens, tf.int32),
                tf.constant(states[0]),
                tf.constant(states[1]),
                tiled_r,
                tiled_k,
            )
            att = np.concatenate([alpha.numpy(), beta.numpy()[:, None]], axis=1)
            return log_softmax(logits.numpy()), (h.numpy(), c.numpy()), att

        return step

    def caption(
        self, images: np.ndarray, beam_width: int | None = None, batch: int = 64
    ) -> list[Caption]:
        """Captions for a batch of images (float32 NHWC in [0, 1]) by beam search."""
        k = beam_width or self.cfg.beam_width
        out: list[Caption] = []
        for i in range(0, len(images), batch):
            regions, keys, h, c = (
                t.numpy() for t in self._encode(tf.constant(images[i : i + batch]))
            )
            for d in beam_search(
                self._step_fn(regions, keys, k),
                (h, c),
                self.vocab.start_id,
                self.vocab.end_id,
                k,
                self.cfg.max_len,
            ):
                words, steps = self.vocab.decode_positions(d.ids)
                maps, visual = split_attention(d.attention[steps], self.grid)
                out.append(Caption(detokenize(words), words, d.score, maps, visual))
        return out
