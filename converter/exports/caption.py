"""The captioner: an encoder graph and a one-step decoder graph; metrics with grounding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from converter.export import Feed, Graph
from converter.exports.base import Export
from core.tokens import END, SPECIALS, START, Vocabulary
from edge.analysis.bundle import Bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.caption import CaptionOutput
from models import metrics
from models.config import ModelsConfig
from models.data.dataset import Dataset
from models.evaluate import domain_scores, eval_captioner
from models.grounding import score_captions
from models.store import has_model, load_captioner

STEP_IN_INT8 = "float16"
"""How an int8 bundle stores the recurrent decoder step. Full int8 activations compound their
error over a caption's words; int16 activations are faithful but run on reference kernels,
several times slower than float16 on the CPU (`bench/convert.py` measures each precision);
float16 weights run on XNNPACK's float kernels, and the step is small enough that float16
costs little in size."""


class CaptionExport(Export):
    key = "caption"
    guarded = ("BLEU-4", "CIDEr", "object_f1", "finding_accuracy")

    def available(self, folder: Path, cfg: ModelsConfig) -> bool:
        return has_model(folder, "captioner") and cfg.captioner is not None

    def graphs(self, folder: Path, cfg: ModelsConfig) -> list[Graph]:
        cap = load_captioner(folder, cfg)
        return [
            Graph("captioner_encoder", cap.encoder, ["regions", "keys", "h", "c"]),
            Graph(
                "captioner_step",
                cap.device_step(),
                ["logits", "h", "c", "alpha", "beta"],
                int8_as=STEP_IN_INT8,
            ),
        ]

    def settings(self, cfg: ModelsConfig) -> dict[str, Any]:
        c = cfg.captioner
        assert c is not None
        vocab = Vocabulary(c.vocab)
        return {
            "attention": c.attention,
            "sentinel": c.sentinel,
            "grid": cfg.grid,
            "max_len": c.max_len,
            "beam_width": c.beam_width,
            "start_id": vocab.start_id,
            "end_id": vocab.end_id,
            "token_input": "one-hot",
        }

    def assets(self, folder: Path, cfg: ModelsConfig, out: Path) -> dict[str, str]:
        assert cfg.captioner is not None
        (out / "vocab.json").write_text(json.dumps(cfg.captioner.vocab))
        return {"vocab": "vocab.json"}

    def feeds(
        self, graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
    ) -> dict[str, list[Feed]]:
        return {
            "captioner_encoder": [{"image": x[None]} for x in images[:limit]],
            "captioner_step": _step_feeds(graphs, images, max_len, limit),
        }

    def reference(self, folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
        report = eval_captioner(load_captioner(folder, cfg), ds, cfg.domain, None)
        out = {k: v for k, v in report.items() if isinstance(v, float)}
        if "grounding" in report:
            out["grounding"] = report["grounding"]["classes"]
        return out

    def device(self, bundle: Bundle, models: BundleModels, ds: Dataset) -> dict[str, Any]:
        output = CaptionOutput(bundle)
        captions = []
        for x in ds.images:
            fields, maps = output.caption(models.runners, x)
            captions.append(_Generated(fields.words, maps, np.asarray(fields.visual)))
        texts = [" ".join(c.tokens).replace(" ,", ",") for c in captions]
        out: dict[str, Any] = {
            **metrics.caption_scores(ds.captions, texts),
            **domain_scores(bundle.doc.domain, texts, ds),
        }
        ground = score_captions(bundle.doc.domain, ds, captions, int(output.settings["grid"]))
        if ground is not None:
            out["grounding"] = ground["classes"]
        return out


class _Generated:
    """A device caption as `score_captions` reads one."""

    def __init__(self, tokens: list[str], attention: np.ndarray, visual: np.ndarray) -> None:
        self.tokens, self.attention, self.visual = tokens, attention, visual


def _step_feeds(
    graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
) -> list[Feed]:
    """Decoder-step inputs met while greedily decoding `images` (a sample of `limit`)."""
    regions, keys, h, c = (
        t.numpy() for t in graphs["captioner_encoder"].model(tf.constant(images), training=False)
    )
    step = graphs["captioner_step"].model
    eye = np.eye(step.inputs[0].shape[-1], dtype=np.float32)
    tokens = np.full(len(images), SPECIALS.index(START))
    alive = np.ones(len(images), bool)
    out: list[Feed] = []
    for _ in range(max_len):
        onehot = eye[tokens]
        out += [
            {
                "token_onehot": onehot[i : i + 1],
                "h": h[i : i + 1],
                "c": c[i : i + 1],
                "regions": regions[i : i + 1],
                "keys": keys[i : i + 1],
            }
            for i in np.flatnonzero(alive)
        ]
        args = [tf.constant(a) for a in (onehot, h, c, regions, keys)]
        logits, h, c, *_ = (t.numpy() for t in step(args, training=False))
        tokens = logits.argmax(-1)
        alive &= tokens != SPECIALS.index(END)
        if not alive.any():
            break
    pick = np.random.default_rng(0).choice(len(out), size=min(limit, len(out)), replace=False)
    return [out[i] for i in sorted(pick)]
