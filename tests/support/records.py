"""Analysed records without the models: real originals and rows in a real store, with a fixed
analysis, for the sink tests and benchmarks (MQTT, S3) that need many records fast."""

from __future__ import annotations

import hashlib

import numpy as np

from edge.analysis.outputs.caption import attention_blob
from edge.store.records import Analysis
from edge.store.store import Store


def fill_analysed(store: Store, sizes: list[int], seed: int = 0) -> list[str]:
    """One analysed record per size, its original random bytes of that size; their ids, in
    capture order. Capture times are fixed (1 s apart), so object keys are reproducible."""
    rng = np.random.default_rng(seed)
    ids = []
    for i, n in enumerate(sizes):
        data = rng.bytes(n)
        rid = hashlib.sha256(data).hexdigest()
        store.accept(
            rid,
            data,
            ext="jpg",
            width=8,
            height=8,
            thumb=b"thumb",
            source="test",
            source_name=f"{seed}-{i}.jpg",
            captured_at=1_790_000_000.0 + i,
        )
        store.save_analysis(
            rid,
            Analysis(
                outputs={
                    "caption": {
                        "text": "right lower zone consolidation, consistent with pneumonia",
                        "words": ["right", "lower", "zone"],
                        "visual": [1.0, 1.0, 1.0],
                        "grid": 8,
                    },
                    "segmentation": {"segments": [{"class": "opacity", "fraction": 0.05}]},
                    "vae": {
                        "labels": [{"name": "consolidation", "score": 0.97}],
                        "anomaly": 0.8,
                        "out_of_domain": False,
                        "ood_score": 0.3,
                    },
                },
                blobs={
                    "attention": attention_blob(rng.random((3, 8, 8))),
                    "latent": rng.random(32).astype(np.float32).tobytes(),
                },
                timings={"caption_ms": 10.0},
            ),
            "chest-int8@test",
            "int8",
        )
        ids.append(rid)
    return ids


def accept_pending(store: Store, ids: tuple[str, ...]) -> None:
    """Pending records of the given ids (any hex text), each with a tiny placeholder original:
    for what names images, not what is in them."""
    for i, rid in enumerate(ids):
        store.accept(
            rid,
            b"pending-%d" % i,
            ext="png",
            width=1,
            height=1,
            thumb=b"",
            source="test",
            source_name="",
            captured_at=0.0,
        )
