"""A searchable corpus without the models: records in a real store, each about one topic word
of the shipped bundle's vocabulary, indexed by the real index sink, and a search engine over
them with the bundle's real query encoder.

A record's caption names its topic, and its region vectors hold the query encoder's own vector
for the topic word in a few regions (random unit vectors elsewhere), so a semantic query for
the word ranks that topic's records first and leaves the others under the relative floor.
Each record's source, anomaly and capture time vary with its place in its topic, so every
filter splits a topic's records.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.analysis.bundle import Bundle, load_bundle
from edge.analysis.outputs.caption import attention_blob
from edge.analysis.outputs.embedding import EmbeddingOutput, pack, unpack
from edge.metrics import Metrics
from edge.search.device import DeviceBackend
from edge.search.engine import SearchEngine
from edge.search.indexes import Indexes
from edge.search.semantic import Encoders, QueryEncoder
from edge.sinks.index import IndexSink
from edge.store.records import Analysis
from edge.store.store import Store

DEVICE = "test-edge"
BASE_TIME = 1_790_000_000.0
HOUR = 3600.0
TOPICS = {
    "pneumonia": ("right lower zone consolidation, consistent with pneumonia", "consolidation"),
    "effusion": ("small left pleural effusion, chest radiograph", "effusion"),
    "nodule": ("left upper zone pulmonary nodule on the chest radiograph", "nodule"),
    "cardiomegaly": ("the cardiac silhouette is enlarged: cardiomegaly", "cardiomegaly"),
}
"""Topic word -> (caption, the VAE label its records carry)."""
PER_TOPIC = 4
SOURCES = ("folder", "upload")
ANOMALIES = (0.4, 1.6, 0.7, 2.2)
"""By place in a topic: above 1.0, a record also carries the `anomalous` label."""


@dataclass(frozen=True)
class Made:
    """One record of the corpus, as the test knows it."""

    id: str
    seq: int
    topic: str
    place: int
    """Its place among its topic's records (0 is the closest to the topic word)."""
    source: str
    anomaly: float
    captured_at: float
    labels: tuple[str, ...]
    out_of_domain: bool = False


@dataclass
class Corpus:
    store: Store
    indexes: Indexes
    engine: SearchEngine
    encoder: QueryEncoder
    bundle: Bundle
    records: list[Made]

    def ids(self, keep: Callable[[Made], bool] = lambda m: True) -> set[str]:
        return {m.id for m in self.records if keep(m)}

    def of(self, topic: str) -> set[str]:
        return self.ids(lambda m: m.topic == topic)

    def by_id(self, rid: str) -> Made:
        return next(m for m in self.records if m.id == rid)

    def close(self) -> None:
        self.indexes.close()
        self.store.close()


def captured_at(topic_index: int, place: int) -> float:
    """Place-major: every topic's first records are the oldest, so a time filter splits each
    topic."""
    return BASE_TIME + (place * len(TOPICS) + topic_index) * HOUR


def topic_regions(
    word: np.ndarray, rows: int, rng: np.random.Generator, spread: float
) -> np.ndarray:
    """(rows, D) unit vectors: random ones, but for two regions and the whole-image vector
    (the last row), which hold `word` plus noise of relative size `spread`."""
    dim = word.shape[-1]
    out = rng.normal(size=(rows, dim))
    unit = word / np.linalg.norm(word)
    for row in (*rng.choice(rows - 1, 2, replace=False), rows - 1):
        noise = rng.normal(size=dim)
        out[row] = unit + spread * noise / np.linalg.norm(noise)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def analysis(
    bundle: Bundle,
    topic: str,
    regions: np.ndarray,
    anomaly: float,
    rng: np.random.Generator,
    out_of_domain: bool = False,
) -> Analysis:
    """A record about `topic`; `out_of_domain`: the same, flagged as out of the bundle's
    domain (its vectors as close to the topic as any record's)."""
    caption, label = TOPICS[topic]
    vectors = unpack(pack(regions), regions.shape[-1])
    profile = EmbeddingOutput(bundle).profile(vectors)
    words = caption.replace(",", " ,").replace(":", "").split()
    return Analysis(
        outputs={
            "caption": {"text": caption, "words": words, "visual": [1.0] * len(words), "grid": 8},
            "segmentation": {"segments": [{"class": "opacity", "fraction": 0.05}]},
            "embedding": {"top_words": [topic]},
            "vae": {
                "labels": [{"name": label, "score": 0.9}],
                "anomaly": anomaly,
                "out_of_domain": out_of_domain,
                "ood_score": 2.5 if out_of_domain else 0.2,
            },
        },
        blobs={
            "attention": attention_blob(rng.random((len(words), 8, 8))),
            "latent": rng.normal(size=32).astype(np.float32).tobytes(),
            "regions": pack(regions),
            "profile": profile.astype(np.float32).tobytes(),
        },
        timings={"caption_ms": 1.0},
    )


def build_corpus(
    folder: Path, bundle: Bundle | None = None, seed: int = 0, strangers: int = 0
) -> Corpus:
    """PER_TOPIC analysed records a topic, made searchable by the index sink, under
    `folder`; the store and the indexes stay open (`Corpus.close`). `strangers`: that many
    more records per topic flagged out of domain, their vectors the closest to the topic."""
    bundle = bundle or load_bundle("chest-int8")
    encoders = Encoders(lambda: bundle)
    encoder = encoders()
    assert encoder is not None, f"{bundle.name} has no semantic search"
    rows = encoder.grid * encoder.grid + 1
    rng = np.random.default_rng(seed)
    store = Store(folder, DEVICE)
    store.register_sink("index")
    made = []
    for place in range(PER_TOPIC + strangers):
        stranger = place >= PER_TOPIC
        for t, topic in enumerate(TOPICS):
            _, words, _ = encoder.encode(topic)
            spread = 0.01 if stranger else 0.1 * (place + 1)
            regions = topic_regions(words[0], rows, rng, spread=spread)
            data = f"{seed}:{topic}:{place}".encode()
            rid = hashlib.sha256(data).hexdigest()
            source, anomaly = SOURCES[place % 2], ANOMALIES[place % len(ANOMALIES)]
            when = captured_at(t, place)
            store.accept(
                rid,
                data,
                ext="png",
                width=8,
                height=8,
                thumb=b"thumb",
                source=source,
                source_name=f"{topic}-{place}.png",
                captured_at=when,
            )
            found = analysis(bundle, topic, regions, anomaly, rng, out_of_domain=stranger)
            store.save_analysis(rid, found, bundle.version, "int8")
            labels = ("opacity", TOPICS[topic][1], *(("anomalous",) if anomaly > 1 else ()))
            seq = store.seq_of(rid)
            assert seq is not None
            made.append(Made(rid, seq, topic, place, source, anomaly, when, labels, stranger))
    indexes = Indexes(store, folder, 16, lambda: bundle.version)
    indexes.open()
    for thread in threading.enumerate():  # the catch-up readers: the sink's refresh reads all
        if thread.name.endswith("-catch-up"):
            thread.join()
    due = store.due("index", len(made))
    IndexSink(indexes, Metrics()).deliver(due)
    store.mark_done("index", [(r.seq, r.revision) for r in due])
    assert all(v.current() for v in indexes.vectors), "vector indexes behind the store"
    assert indexes.keyword.num_docs == len(made)
    engine = SearchEngine(DeviceBackend(indexes.keyword, indexes.profile, store), encoders)
    return Corpus(store, indexes, engine, encoder, bundle, made)
