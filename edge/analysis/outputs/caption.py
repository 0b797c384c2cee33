"""`caption`: the captioner's encoder and one-step decoder, searched by beam over the TFLite
step, with each word's attention over the grid of regions and how much it looked at all."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.decoding import beam_search, log_softmax
from core.tokens import Vocabulary, detokenize
from edge.analysis.outputs.base import Output, OutputFields, Produced
from edge.analysis.runtime import Runner


class CaptionFields(OutputFields):
    text: str
    words: list[str]
    visual: list[float]
    """Per word, 1 - the sentinel's share: how much it relied on the image."""
    grid: int
    score: float = 0.0


def attention_blob(maps: np.ndarray) -> bytes:
    """uint8 per cell, each word scaled to its own peak: 64 bytes a word instead of 256."""
    a = np.asarray(maps, dtype=np.float32)
    peak = a.reshape(len(a), -1).max(axis=1).reshape(-1, 1, 1) if len(a) else a
    return np.round(a / np.maximum(peak, 1e-12) * 255).astype(np.uint8).tobytes()


def attention_maps(blob: bytes, words: int, grid: int) -> np.ndarray:
    """(words, grid, grid), each scaled to its peak (1.0)."""
    return np.frombuffer(blob, np.uint8).reshape(words, grid, grid).astype(np.float32) / 255


class CaptionOutput(Output):
    key = "caption"
    Fields = CaptionFields

    def __init__(self, bundle: Any) -> None:
        super().__init__(bundle)
        self.vocab = Vocabulary(bundle.asset("vocab"))
        self.eye = np.eye(len(self.vocab), dtype=np.float32)
        self.beam_width = int(self.settings["beam_width"])

    def caption(
        self, runners: dict[str, Runner], x: np.ndarray, beam_width: int = 0
    ) -> tuple[CaptionFields, np.ndarray]:
        """The caption's fields and its (words, grid, grid) attention maps."""
        enc = runners["captioner_encoder"](image=x[None].astype(np.float32))
        step_model = runners["captioner_step"]
        regions, keys = enc["regions"], enc["keys"]

        def step(
            tokens: np.ndarray, states: tuple[np.ndarray, ...]
        ) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
            outs = [
                step_model(
                    token_onehot=self.eye[t][None],
                    h=states[0][i : i + 1],
                    c=states[1][i : i + 1],
                    regions=regions,
                    keys=keys,
                )
                for i, t in enumerate(tokens)
            ]
            logits = np.concatenate([o["logits"] for o in outs])
            new = (np.concatenate([o["h"] for o in outs]), np.concatenate([o["c"] for o in outs]))
            alpha = np.concatenate([o["alpha"] for o in outs])
            beta = np.concatenate(
                [o["beta"].reshape(1, 1) if "beta" in o else np.zeros((1, 1)) for o in outs]
            )
            return log_softmax(logits), new, np.concatenate([alpha, beta], axis=1)

        width, max_len = beam_width or self.beam_width, int(self.settings["max_len"])
        start, end = self.vocab.start_id, self.vocab.end_id
        best = beam_search(step, (enc["h"], enc["c"]), start, end, width, max_len)[0]
        words, steps = self.vocab.decode_positions(best.ids)
        att = best.attention[steps]
        grid = int(self.settings["grid"])
        maps = att[:, : grid * grid].reshape(len(words), grid, grid)
        visual = [round(float(1.0 - v), 4) for v in att[:, -1]]
        fields = CaptionFields(
            text=detokenize(words),
            words=words,
            visual=visual,
            grid=grid,
            score=round(float(best.score), 4),
        )
        return fields, maps

    def run(self, runners: dict[str, Runner], x: np.ndarray) -> Produced:
        fields, maps = self.caption(runners, x)
        return Produced(fields, blobs={"attention": attention_blob(maps)})

    @classmethod
    def text(cls, f: Any) -> str:
        return str(f.text)
