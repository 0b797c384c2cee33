"""Greedy and beam-search decoding over a one-step decoder, in numpy.

The step function is whatever runs one decoder step (a Keras model in training and evaluation, a
TFLite interpreter on the device), so the search itself needs no TensorFlow. All images of a batch
are searched together: states carry a leading N*K dimension (N images, K beams).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

States = tuple[np.ndarray, ...]
StepFn = Callable[[np.ndarray, States], tuple[np.ndarray, States, np.ndarray]]
"""(tokens (B,), states) -> (log-probabilities (B, V), new states, attention (B, R))."""


class Decoded(NamedTuple):
    """The best hypothesis for one image."""

    ids: list[int]
    """Generated token ids, without <start> and without the final <end>."""
    score: float
    """Sum of log-probabilities of the tokens, <end> included."""
    attention: np.ndarray
    """(len(ids), R): the attention weights over the R regions when each token was produced."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def beam_search(
    step: StepFn,
    init_states: States,
    start_id: int,
    end_id: int,
    beam_width: int = 3,
    max_len: int = 24,
) -> list[Decoded]:
    """Best sequence per image by beam search; `beam_width=1` is greedy decoding.

    Finished hypotheses stay in the beam with their score frozen (they only extend with <end> at
    no cost), so they compete with live ones until the end; the best by total log-probability
    wins. With a beam as wide as the search tree this is an exhaustive search.
    """
    n, k = len(init_states[0]), beam_width
    states = tuple(np.repeat(s, k, axis=0) for s in init_states)
    scores = np.full((n, k), -np.inf)
    scores[:, 0] = 0.0
    tokens = np.full((n, k, 0), end_id, dtype=np.int64)
    alphas: np.ndarray | None = None
    done = np.zeros((n, k), dtype=bool)
    last = np.full(n * k, start_id, dtype=np.int64)
    rows = np.arange(n)[:, None]
    for _ in range(max_len):
        logp, new_states, alpha = step(last, states)
        vocab = logp.shape[-1]
        logp = logp.reshape(n, k, vocab).astype(np.float64)
        frozen = np.full(vocab, -np.inf)
        frozen[end_id] = 0.0
        logp = np.where(done[..., None], frozen, logp)
        cand = (scores[..., None] + logp).reshape(n, k * vocab)
        top = np.argsort(-cand, axis=1, kind="stable")[:, :k]
        beam, tok = top // vocab, top % vocab
        scores = np.take_along_axis(cand, top, axis=1)
        flat = (rows * k + beam).reshape(-1)
        states = tuple(s[flat] for s in new_states)
        step_alpha = alpha.reshape(n, k, -1)[rows, beam][:, :, None]
        alphas = (
            step_alpha if alphas is None else np.concatenate([alphas[rows, beam], step_alpha], 2)
        )
        tokens = np.concatenate([tokens[rows, beam], tok[..., None]], axis=2)
        done = done[rows, beam] | (tok == end_id)
        last = tok.reshape(-1)
        if done.all():
            break
    assert alphas is not None
    out = []
    for i in range(n):
        b = int(np.argmax(scores[i]))
        seq = tokens[i, b].tolist()
        length = seq.index(end_id) if end_id in seq else len(seq)
        out.append(Decoded(seq[:length], float(scores[i, b]), alphas[i, b, :length]))
    return out
