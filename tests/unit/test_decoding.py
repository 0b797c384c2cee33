"""Beam search against hand-made decoders whose best sequence is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.decoding import beam_search, log_softmax

START, END = 1, 2


class TableDecoder:
    """A decoder whose next-token distribution is a fixed function of the whole prefix.

    The state is an index into the list of prefixes seen, so beam search's gathering of states
    is exercised exactly as with a real LSTM state.
    """

    def __init__(
        self,
        table: dict[tuple[int, ...], dict[int, float]] | None = None,
        vocab: int = 5,
        seed: int = 0,
    ) -> None:
        self.table, self.vocab, self.seed = table, vocab, seed
        self.prefixes: list[tuple[int, ...]] = [()]

    def logp(self, prefix: tuple[int, ...]) -> np.ndarray:
        if self.table is not None:
            p = np.full(self.vocab, 1e-9)
            for tok, prob in self.table.get(prefix, {END: 1.0}).items():
                p[tok] = prob
            return np.log(p / p.sum())
        rng = np.random.default_rng([self.seed, len(prefix), *prefix])
        logits = rng.normal(0, 2, self.vocab)
        logits[[0, START]] = -1e9  # a decoder never emits <pad> or <start>
        return log_softmax(logits)

    def step(self, tokens: np.ndarray, states: tuple[np.ndarray, ...]):
        out, codes, alpha = [], [], []
        for tok, code in zip(tokens, states[0][:, 0].astype(int), strict=True):
            prefix = self.prefixes[code] + ((int(tok),) if tok != START else ())
            if prefix not in self.prefixes:
                self.prefixes.append(prefix)
            codes.append(self.prefixes.index(prefix))
            out.append(self.logp(prefix))
            alpha.append(np.full(4, len(prefix), float))
        return np.array(out), (np.array(codes, float)[:, None],), np.array(alpha)

    def exhaustive(self, max_len: int) -> tuple[list[int], float]:
        best: tuple[list[int], float] = ([], -np.inf)
        tokens = range(self.vocab)
        for length in range(1, max_len + 1):
            for seq in itertools.product(tokens, repeat=length):
                if END in seq[:-1]:
                    continue
                score = sum(self.logp(seq[:i])[seq[i]] for i in range(length))
                if score > best[1]:
                    best = ([t for t in seq if t != END] if seq[-1] == END else list(seq), score)
        return best


TRAP = {
    (): {3: 0.6, 4: 0.4},
    (3,): {3: 0.35, 4: 0.35, END: 0.3},
    (4,): {END: 0.9, 3: 0.05, 4: 0.05},
    (3, 3): {END: 0.5, 4: 0.5},
}


def _search(dec: TableDecoder, k: int, max_len: int = 4):
    return beam_search(dec.step, (np.zeros((1, 1)),), START, END, k, max_len)[0]


def test_greedy_follows_the_locally_best_token_into_a_worse_sequence() -> None:
    out = _search(TableDecoder(TRAP), 1)
    assert out.ids[0] == 3
    assert out.score < np.log(0.36) - 0.1


def test_beam_of_two_finds_the_best_scoring_sequence() -> None:
    out = _search(TableDecoder(TRAP), 2)
    assert out.ids == [4]
    assert out.score == pytest.approx(np.log(0.4 * 0.9), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_wide_beam_equals_exhaustive_search(seed: int) -> None:
    dec = TableDecoder(vocab=4, seed=seed)
    ids, score = dec.exhaustive(3)
    out = _search(TableDecoder(vocab=4, seed=seed), 64, max_len=3)
    assert out.ids == ids
    assert out.score == pytest.approx(score, abs=1e-9)


def test_batched_search_decodes_each_image_independently() -> None:
    dec = TableDecoder(TRAP)
    outs = beam_search(dec.step, (np.zeros((3, 1)),), START, END, 2, 4)
    assert [o.ids for o in outs] == [[4], [4], [4]]


def test_attention_is_returned_for_every_generated_token() -> None:
    out = _search(TableDecoder(vocab=5, seed=9), 3, max_len=5)
    assert out.attention.shape == (len(out.ids), 4)
    # the hand-made "attention" records the prefix length when each token was produced
    assert out.attention[:, 0].tolist() == list(range(len(out.ids)))
