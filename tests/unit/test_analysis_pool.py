"""The analysis pool's promises, seen in the store: an analysis is saved with the running
bundle, an error the models raise marks the image failed with the reason, a crashed analysis
process gets one more try, an undecodable original fails, records of an older bundle are
re-analysed after the fresh ones (a failed re-analysis keeps the older analysis and is not
tried again), and an evicted original that cannot be fetched back waits.

A scripted `AnalyserLike`, in the test's own process, stands in for the analysis processes;
the store, the ingestor and the bundle are real. The pool runs its own threads, so each test
waits on the pool's callbacks, never on time. Two images in flight when a process dies (the
oldest gets one more try, the others two) are not shown: which images are in flight at once
depends on the threads' timing.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

import numpy as np
import pytest
from PIL import Image

from edge.analysis.bundle import Bundle, load_bundle
from edge.analysis.pool import AnalysisPool
from edge.analysis.worker import AnalysisError, WorkerDiedError
from edge.config import EdgeConfig
from edge.ingest.ingestor import Ingestor, Inputs
from edge.metrics import Metrics
from edge.parts import Hooks
from edge.store.records import Analysis, Record
from edge.store.store import Store

OLDER = "chest-int8@older"
ANALYSIS = Analysis(
    outputs={"vae": {"labels": [], "anomaly": 0.5, "out_of_domain": False, "ood_score": 0.1}},
    timings={"vae_ms": 1.0},
)
Outcome: TypeAlias = Analysis | Exception


class Scripted:
    """An analysis process stand-in: each `receive` and each `analyse` gives the next of its
    outcomes (an analysis, or an error it raises); what it was sent is kept."""

    fallback_reason = ""
    runtime = "scripted"

    def __init__(
        self, bundle: Bundle, receives: list[Outcome], analyses: list[Outcome] | None = None
    ) -> None:
        self.bundle, self.bundles = bundle, [bundle]
        self.placement: dict[str, str] = {}
        self.receives, self.analyses = deque(receives), deque(analyses or [])
        self.sent: list[Inputs] = []
        self.analysed: list[Inputs] = []
        self.closed = False

    @staticmethod
    def _next(outcomes: deque[Outcome]) -> Analysis:
        outcome = outcomes.popleft()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def send(self, x: Inputs) -> None:
        self.sent.append(x)

    def receive(self) -> Analysis:
        return self._next(self.receives)

    def analyse(self, x: Inputs) -> Analysis:
        self.analysed.append(x)
        return self._next(self.analyses)

    def close(self) -> None:
        self.closed = True


class Running:
    """A started pool over one analyser, stopped on exit; counts the analyses saved."""

    def __init__(
        self, store: Store, ingestor: Ingestor, analyser: Scripted, share: float = 0.0
    ) -> None:
        self.saved = 0
        self._changed = threading.Condition()
        self.caught_up = threading.Event()
        self.pool = AnalysisPool(
            store,
            ingestor,
            [analyser],
            Metrics(),
            self._on_analysed,
            share,
            on_caught_up=self.caught_up.set,
        )

    def _on_analysed(self) -> None:
        with self._changed:
            self.saved += 1
            self._changed.notify_all()

    def wait_saved(self, n: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.saved >= n, 10), f"{n} saved"

    def wait_caught_up(self) -> None:
        assert self.caught_up.wait(10), "the pool never caught up"

    def __enter__(self) -> Running:
        self.pool.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.pool.stop(time.monotonic() + 10)


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle("chest-int8")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store", "test")
    yield s
    s.close()


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def ingestor(store: Store, bundle: Bundle, hooks: Hooks) -> Iterator[Ingestor]:
    ing = Ingestor(store, [bundle.doc.preprocessing], EdgeConfig(), Metrics(), hooks)
    yield ing
    ing.close()


def png(level: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((48, 48), level, np.uint8), "L").save(out, "PNG")
    return out.getvalue()


def stored(store: Store, data: bytes, analysed_by: str | None = None) -> str:
    """A record of `data` in the store: pending, or analysed by the bundle `analysed_by`."""
    rid = hashlib.sha256(data).hexdigest()
    store.accept(
        rid,
        data,
        ext="png",
        width=48,
        height=48,
        thumb=b"thumb",
        source="test",
        source_name=f"{rid[:8]}.png",
        captured_at=1_790_000_000.0 + len(data),
    )
    if analysed_by is not None:
        store.save_analysis(rid, ANALYSIS, analysed_by, "int8")
    return rid


def record(store: Store, rid: str) -> Record:
    got = store.get(rid)
    assert got is not None
    return got


# -- fresh images ----------------------------------------------------------------------------
def test_an_analysis_is_saved_with_the_running_bundle(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    rid = stored(store, png(120))
    analyser = Scripted(bundle, [ANALYSIS])
    with Running(store, ingestor, analyser) as run:
        run.wait_saved(1)
    r = record(store, rid)
    assert (r.status, r.bundle, r.revision, r.error) == ("analysed", bundle.version, 1, None)
    assert r.analysis == ANALYSIS.outputs
    spec = bundle.doc.preprocessing
    assert [[x.shape for x in xs] for xs in analyser.sent] == [
        [(spec.size, spec.size, spec.channels)]
    ]
    assert analyser.analysed == [] and analyser.closed


def test_an_error_the_models_raise_marks_the_image_failed_with_the_reason(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    rid = stored(store, png(121))
    analyser = Scripted(bundle, [AnalysisError("ValueError: no caption")])
    with Running(store, ingestor, analyser) as run:
        run.wait_caught_up()
    r = record(store, rid)
    assert (r.status, r.error, r.bundle) == ("failed", "ValueError: no caption", bundle.version)
    assert run.saved == 0
    assert analyser.analysed == [], "an error of the models is not tried again"
    assert store.count_pending() == 0


def test_a_crashed_analysis_process_gets_one_more_try(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    rid = stored(store, png(122))
    analyser = Scripted(bundle, [WorkerDiedError("analysis process died")], [ANALYSIS])
    with Running(store, ingestor, analyser) as run:
        run.wait_saved(1)
    assert record(store, rid).status == "analysed"
    assert len(analyser.analysed) == 1
    assert np.array_equal(analyser.analysed[0], analyser.sent[0]), "the same image again"


def test_a_second_crash_marks_the_image_failed_with_the_reason(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    rid = stored(store, png(123))
    died = [WorkerDiedError("died (exit code -9)"), WorkerDiedError("died again (exit code -9)")]
    analyser = Scripted(bundle, died[:1], died[1:])
    with Running(store, ingestor, analyser) as run:
        run.wait_caught_up()
    r = record(store, rid)
    assert (r.status, r.error) == ("failed", "died again (exit code -9)")
    assert run.saved == 0


def test_an_original_that_cannot_be_decoded_is_marked_failed_unsent(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    rid = stored(store, b"not a png at all")
    analyser = Scripted(bundle, [])
    with Running(store, ingestor, analyser) as run:
        run.wait_caught_up()
    r = record(store, rid)
    assert r.status == "failed" and r.bundle == bundle.version
    assert r.error is not None and r.error.startswith("not an image in an accepted format")
    assert analyser.sent == []


# -- records of an older bundle --------------------------------------------------------------
def test_a_record_of_an_older_bundle_is_re_analysed_with_the_running_one(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    rid = stored(store, png(130), analysed_by=OLDER)
    with Running(store, ingestor, Scripted(bundle, [ANALYSIS]), share=1.0) as run:
        run.wait_saved(1)
        progress = run.pool.progress()
    r = record(store, rid)
    assert (r.bundle, r.revision) == (bundle.version, 2)
    assert (progress["total"], progress["done"], progress["left"]) == (1, 1, 0)


def test_fresh_images_are_analysed_before_older_records(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    older = stored(store, png(10), analysed_by=OLDER)
    fresh = stored(store, png(250))
    analyser = Scripted(bundle, [ANALYSIS, ANALYSIS])
    with Running(store, ingestor, analyser, share=1.0) as run:
        run.wait_saved(2)
    assert [float(x[0].mean()) > 0.5 for x in analyser.sent] == [True, False], "fresh first"
    assert record(store, fresh).revision == 1 and record(store, older).revision == 2


def test_with_no_share_for_re_analysis_older_records_are_left_as_they_are(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    older = stored(store, png(11), analysed_by=OLDER)
    stored(store, png(251))
    analyser = Scripted(bundle, [ANALYSIS])
    with Running(store, ingestor, analyser, share=0.0) as run:
        run.wait_saved(1)
        run.wait_caught_up()
    assert len(analyser.sent) == 1
    assert (record(store, older).bundle, record(store, older).revision) == (OLDER, 1)


def test_a_failed_re_analysis_keeps_the_older_analysis_and_is_not_tried_again(
    store: Store, ingestor: Ingestor, bundle: Bundle
) -> None:
    rid = stored(store, png(131), analysed_by=OLDER)
    analyser = Scripted(bundle, [AnalysisError("RuntimeError: boom")])
    with Running(store, ingestor, analyser, share=1.0) as run:
        run.wait_caught_up()
    r = record(store, rid)
    assert (r.status, r.bundle, r.revision) == ("analysed", OLDER, 1)
    assert r.analysis == ANALYSIS.outputs and r.error == "RuntimeError: boom"
    assert store.count_stale(bundle.version) == 0, "this bundle does not try it again"
    assert len(analyser.sent) == 1


def test_an_evicted_original_that_cannot_be_fetched_back_waits(
    store: Store, ingestor: Ingestor, bundle: Bundle, hooks: Hooks
) -> None:
    rid = stored(store, png(132), analysed_by=OLDER)
    store.original_path(rid, "png").unlink()
    store.mark_evicted([rid])
    asked = threading.Event()

    def unreachable(r: Record) -> bytes | None:
        asked.set()
        return None

    hooks.fetch_original = unreachable
    analyser = Scripted(bundle, [])
    with Running(store, ingestor, analyser, share=1.0) as run:
        run.wait_caught_up()
        assert asked.is_set() and run.pool.waiting == 1
    r = record(store, rid)
    assert (r.status, r.bundle, r.revision, r.error) == ("analysed", OLDER, 1, None)
    assert analyser.sent == []
    assert store.count_stale(bundle.version) == 1, "still to do"


def test_an_evicted_original_is_fetched_back_and_re_analysed(
    store: Store, ingestor: Ingestor, bundle: Bundle, hooks: Hooks
) -> None:
    data = png(133)
    rid = stored(store, data, analysed_by=OLDER)
    store.original_path(rid, "png").unlink()
    store.mark_evicted([rid])
    hooks.fetch_original = lambda r: data if r.id == rid else None
    with Running(store, ingestor, Scripted(bundle, [ANALYSIS]), share=1.0) as run:
        run.wait_saved(1)
        assert run.pool.waiting == 0
    assert (record(store, rid).bundle, record(store, rid).revision) == (bundle.version, 2)
