"""An `Analyser` in a child process of its own.

The models are tiny, so most of an analysis is Python around the interpreters (the beam
search), which holds the GIL. In the daemon's process that would serialise analysis with
ingest (hashing, decoding, the store) and the HTTP server; in its own process it runs on the
other core. The child gets preprocessed arrays over a pipe and sends back the `Analysis` and
the mask. The parent may `send` the next image before it `receive`s the last one's analysis,
so the child never waits on the parent's store writes or its GIL between images. It ignores
SIGINT/SIGTERM (the daemon decides when to stop) and exits when the pipe closes, so a kill -9
of the daemon leaves no orphan.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

from edge.analysis.bundle import Bundle, BundleDoc
from edge.analysis.outputs import references
from edge.config import ModelConfig
from edge.ingest.ingestor import Inputs
from edge.store.records import Analysis

START_TIMEOUT_S = 120.0
ANALYSE_TIMEOUT_S = 60.0
"""An image's analysis takes milliseconds; a child silent this long is hung, and replaced."""


class AnalysisError(RuntimeError):
    """The models raised on one image; the message says what."""


class WorkerDiedError(RuntimeError):
    """The analysis process is gone (crashed or killed)."""


def _serve(
    conn: Connection,
    bundles: list[tuple[str, dict[str, Any]]],
    cfg: dict[str, Any],
    outputs: dict[str, str],
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from edge.analysis.analyser import Analyser, Router
    from edge.analysis.outputs import register

    try:  # the parent verified the bundles' hashes; their docs and output registry come along
        register(outputs)
        config = ModelConfig(**cfg)
        analyser = Router(
            [
                Analyser(Bundle(Path(root), BundleDoc.model_validate(doc)), config)
                for root, doc in bundles
            ]
        )
    except Exception as e:
        conn.send(("error", str(e)))
        return
    conn.send(("ready", analyser.placement, analyser.fallback_reason, analyser.runtime))
    while True:
        try:
            x = conn.recv()
        except (EOFError, OSError):
            return
        if x is None:
            return
        try:
            conn.send(("ok", analyser.analyse(x)))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))


class AnalyserProcess:
    """A `Router` over `bundles` (one, or the first and its catch-all) in a process of its
    own: `analyse` takes the image's input for each bundle, in order."""

    def __init__(self, bundles: list[Bundle], cfg: ModelConfig) -> None:
        self.bundles = bundles
        self.bundle = bundles[0]
        self._cfg = cfg
        self._closing = False
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve,
            args=(
                child,
                [(str(b.root), b.doc.model_dump()) for b in self.bundles],
                self._cfg.model_dump(),
                references(),
            ),
            name="s3e-analyser",
            daemon=True,
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT_S):
            self.close()
            raise RuntimeError(f"analysis process did not start in {START_TIMEOUT_S:.0f}s")
        try:
            msg = self._conn.recv()
        except EOFError:
            raise RuntimeError("analysis process exited while loading the models") from None
        if msg[0] == "error":
            self._proc.join(5)
            raise RuntimeError(msg[1])
        _, self.placement, self.fallback_reason, self.runtime = msg

    @property
    def pid(self) -> int | None:
        """The analysis process's id; a crash replaces the process, and so the id."""
        return self._proc.pid

    def analyse(self, x: Inputs) -> Analysis:
        self.send(x)
        return self.receive()

    def send(self, x: Inputs) -> None:
        """Queue an image; its analysis comes from `receive`, in the order sent. After a
        `WorkerDiedError` a fresh process runs, and every image sent before is lost."""
        try:
            self._conn.send(x)
        except (EOFError, OSError):
            self._died()

    def receive(self) -> Analysis:
        """The analysis of the oldest image sent and not yet received."""
        try:
            if not self._conn.poll(ANALYSE_TIMEOUT_S):
                self._proc.kill()
                raise EOFError
            msg = self._conn.recv()
        except (EOFError, OSError):
            self._died()
        if msg[0] == "error":
            raise AnalysisError(msg[1])
        return msg[1]

    def _died(self) -> NoReturn:
        self._proc.join(5)
        why = f"exit code {self._proc.exitcode}"
        self._conn.close()
        if not self._closing:
            self._start()  # a fresh process for the next image
        raise WorkerDiedError(f"analysis process died ({why})") from None

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()
