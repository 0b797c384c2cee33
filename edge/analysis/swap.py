"""Starting a bundle's analysers, and swapping bundles on a running daemon.

A swap verifies the new bundle before anything changes: every file's hash, its outputs known
to this device, its models loaded in fresh analysis processes, and one test inference. A bad
bundle is refused with the reason and the old one keeps running; a good one takes new captures
at once, and the records of older bundles are re-analysed in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from edge.analysis.bundle import Bundle, BundleError, load_bundle
from edge.analysis.pool import AnalysisPool, SwapInProgressError
from edge.analysis.worker import AnalyserProcess
from edge.config import ModelConfig

log = logging.getLogger("s3e.swap")


class StartupError(RuntimeError):
    """The daemon cannot start; the message says which part and why."""


class BundleRefusedError(ValueError):
    """A bundle that cannot replace the running one; the message says why."""


def start_analysers(bundles: list[Bundle], cfg: ModelConfig) -> list[AnalyserProcess]:
    """`cfg.workers` analysis processes routing between `bundles` (the first analyses every
    image, the next what it calls out of its domain); StartupError naming the accelerator."""
    started: list[AnalyserProcess] = []
    try:
        for _ in range(cfg.workers):
            started.append(AnalyserProcess(bundles, cfg))
    except RuntimeError as e:
        for a in started:
            a.close()
        raise StartupError(f"model.accelerator = {cfg.accelerator}: {e}") from None
    return started


def probe(bundles: list[Bundle]) -> tuple[np.ndarray, ...]:
    """A grey image of each bundle's input shape, for a test inference."""
    return tuple(
        np.full((p.size, p.size, p.channels), 0.5, np.float32)
        for p in (b.doc.preprocessing for b in bundles)
    )


class BundleSwapper:
    def __init__(self, pool: AnalysisPool, cfg: ModelConfig) -> None:
        self.pool, self.cfg = pool, cfg
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def swap(self, ref: str) -> dict[str, Any]:
        """Verify and switch to the bundle `ref` (a shipped name or a folder): it replaces the
        running bundle of its domain (where the device routes between several), else the
        first. Raises SwapInProgressError during another swap, BundleRefusedError for a bad
        bundle."""
        if not self._lock.acquire(blocking=False) or self.pool.swapping:
            raise SwapInProgressError("a bundle swap is in progress; try again when it is done")
        try:
            t0 = time.monotonic()
            bundle = self._verified(ref)
            old = self.pool.version
            running = self.pool.bundles
            at = next((i for i, b in enumerate(running) if b.doc.domain == bundle.doc.domain), 0)
            analysers = self._started([*running[:at], bundle, *running[at + 1 :]])
            self.pool.swap(analysers)
            progress = self.pool.progress()
            log.info(
                "bundle swapped: %s -> %s in %.1f s; %d records to re-analyse",
                old,
                bundle.version,
                time.monotonic() - t0,
                progress["left"],
            )
            return {"bundle": bundle.version, "previous": old, "reanalysis": progress}
        finally:
            self._lock.release()

    def _verified(self, ref: str) -> Bundle:
        try:
            bundle = load_bundle(ref)
        except BundleError as e:
            raise BundleRefusedError(str(e)) from None
        if any(bundle.version == b.version for b in self.pool.bundles):
            raise BundleRefusedError(f"{bundle.version} is a bundle running now")
        return bundle

    def _started(self, bundles: list[Bundle]) -> list[AnalyserProcess]:
        where = ", ".join(str(b.root) for b in bundles)
        try:
            analysers = start_analysers(bundles, self.cfg)
        except StartupError as e:
            raise BundleRefusedError(f"{where}: the models do not load: {e}") from None
        try:
            analysers[0].analyse(probe(bundles))
        except Exception as e:
            for a in analysers:
                a.close()
            raise BundleRefusedError(f"{where}: a test inference failed: {e}") from None
        return analysers
