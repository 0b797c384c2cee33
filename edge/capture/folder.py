"""`folder`: a watched directory (inotify through watchdog, or polling).

A file counts as written once its size and mtime have stayed the same for `settle_s`; names a
writer uses while it is still writing (`.part`, `.tmp`, dot files) are never taken. Whatever is
already there at start is taken too. A taken file is removed (once the store holds it durably)
or, if refused, moved to `rejected/` with its reason; a file that does not decode or cannot be
read is looked at once more first (a writer may have paused longer than `settle_s`). If the
store cannot take it now (a full disk, the decode budget), it stays where it is and is tried
again.

Files are opened with O_NOFOLLOW | O_NONBLOCK and must be regular files of at most
`max_bytes` (checked with fstat, then read in bounded chunks): a FIFO cannot block the thread,
/dev/zero cannot fill memory, and a symbolic link is followed only when
`follow_symlinks` is on and it points inside one of `symlink_roots`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

from edge.capture.base import Ingest, Reject, printable
from edge.config import FolderCaptureConfig
from edge.ingest.imaging import TEMP_SUFFIXES, DecodeBusyError, ImageRejectedError
from edge.ingest.ingestor import IngestClosedError

MAX_IN_FLIGHT = 8
"""Files handed to the ingest pool at once, at most."""
MAX_DEPTH = 8
"""Sub-folders deeper than this are not looked into."""
RETRY_KINDS = ("corrupt", "empty", "not_an_image", "unreadable", "internal")
"""Refusals that get a second look: a writer may not have finished."""

log = logging.getLogger("s3e.capture.folder")


def is_candidate(path: Path) -> bool:
    parts = path.parts
    return not any(p.startswith(".") for p in parts) and not path.name.endswith(TEMP_SUFFIXES)


class FolderSource:
    key = "folder"
    Config = FolderCaptureConfig

    def __init__(self, cfg: FolderCaptureConfig, ingestor: Ingest, reject: Reject) -> None:
        self.cfg, self.ingestor, self.reject = cfg, ingestor, reject
        self.root = Path(cfg.path)
        self._inflight: dict[Path, tuple[Future[Any], Path, tuple[int, int]]] = {}
        """Files handed to the ingest pool: removed once stored, not before."""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._seen: dict[Path, tuple[int, int, float]] = {}
        """path -> (size, mtime_ns, monotonic time that state was first seen)."""
        self._done: dict[Path, tuple[int, int]] = {}
        """Files kept in place (delete_accepted off, or failed to move): not taken again."""
        self._suspect: dict[Path, tuple[tuple[int, int], float]] = {}
        """Files that failed once, with when: refused if they fail again, unchanged, after
        `recheck_s`."""
        self.recheck_s = max(cfg.poll_interval_s, 5 * cfg.settle_s)
        self._observer: Any = None
        self._thread = threading.Thread(target=self._run, name="capture-folder", daemon=True)
        self.mode = "poll"
        self.beat = time.monotonic()
        """When the scanning loop last came round: a stuck thread stops beating."""
        self._scans = 0
        self.stall_after_s = max(60.0, 10 * cfg.poll_interval_s)

    @staticmethod
    def enabled(cfg: FolderCaptureConfig) -> bool:
        return cfg.enabled

    @property
    def threads(self) -> list[threading.Thread]:
        return [self._thread]

    @property
    def scans(self) -> int:
        """Scans of the folder done so far. Two more mean a whole scan began after any given
        moment: every file there then has been looked at, and a file whose ingest had ended
        has been dealt with (removed, refused, or kept to try again)."""
        return self._scans

    @property
    def awaiting_second_look(self) -> tuple[Path, ...]:
        """Files that failed once (truncated, unreadable) and are looked at again after
        `recheck_s` before being refused: a writer may have paused longer than `settle_s`."""
        return tuple(sorted(tuple(self._suspect)))

    def commands(self) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.cfg.watch in ("auto", "inotify"):
            self._start_watch()
        log.info("watching %s (%s)", self.root.resolve(), self.mode)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
        if self._thread.ident is not None:
            self._thread.join(10)

    def _start_watch(self) -> None:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers.inotify import InotifyObserver
        except ImportError as e:
            if self.cfg.watch == "inotify":
                raise RuntimeError(f"capture.folder.watch = inotify needs watchdog: {e}") from e
            log.warning("watchdog unavailable (%s); polling %s", e, self.root)
            return
        wake = self._wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        try:
            observer = InotifyObserver()
            observer.schedule(Handler(), str(self.root), recursive=True)
            observer.start()
        except OSError as e:
            if self.cfg.watch == "inotify":
                raise RuntimeError(f"inotify watch on {self.root} failed: {e}") from e
            log.warning("inotify unavailable on %s (%s); polling instead", self.root, e)
            return
        self._observer, self.mode = observer, "inotify"

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat = time.monotonic()
            soonest = self.scan()
            self._scans += 1
            # Events wake us; the settle timer and the poll interval bound the wait.
            wait = self.cfg.poll_interval_s if soonest is None else min(soonest, 0.2)
            self._wake.wait(wait)
            self._wake.clear()
        deadline = time.monotonic() + 10.0  # what the pool took finishes, and is dealt with
        for fut, _, _ in list(self._inflight.values()):
            with contextlib.suppress(Exception):
                fut.exception(timeout=max(0.0, deadline - time.monotonic()))
        self._reap()

    def scan(self) -> float | None:
        """Take every settled file; seconds until the next unsettled one may be ready."""
        self._reap()
        now = time.monotonic()
        soonest: float | None = None
        present = set(self._inflight)
        try:
            paths = sorted(walk(self.root))
        except OSError as e:
            log.error("cannot list %s: %s", self.root, e)
            return None
        for path in paths:
            if self._stop.is_set():
                break
            rel = path.relative_to(self.root)
            if not is_candidate(rel) or path in self._inflight:
                continue
            present.add(path)
            try:
                st = path.lstat()  # the entry itself: a link is judged when it is opened
                state = (st.st_size, st.st_mtime_ns)
            except OSError:
                state = (-1, -1)  # vanished: settles, then is refused
            if self._done.get(path) == state:
                continue
            seen = self._seen.get(path)
            if seen is None or seen[:2] != state:
                self._seen[path] = (*state, now)
                left = self.cfg.settle_s
            else:
                left = self.cfg.settle_s - (now - seen[2])
            suspect = self._suspect.get(path)
            if suspect is not None and suspect[0] == state:
                left = max(left, self.recheck_s - (now - suspect[1]))
            if left > 0:
                soonest = left if soonest is None else min(soonest, left)
                continue
            if len(self._inflight) >= MAX_IN_FLIGHT:
                break  # a completed one wakes us
            if self._take(path, rel, state):
                self._seen.pop(path, None)
            elif path not in self._inflight:
                soonest = self.cfg.poll_interval_s
        for gone in set(self._seen) - present:
            self._seen.pop(gone)
        for gone in set(self._done) - present:
            self._done.pop(gone)
        for gone in set(self._suspect) - present:
            self._suspect.pop(gone)
        return soonest

    def _take(self, path: Path, rel: Path, state: tuple[int, int]) -> bool:
        """True when the file is refused at once; False when it is handed to ingest (in
        flight) or must be tried again later."""
        name = str(rel)
        try:
            data = read_file(path, self.cfg.max_bytes, self._link_roots())
        except ImageRejectedError as e:
            self._refuse(path, name, state, e.kind, e.reason)
            return True
        except OSError as e:
            return self._refuse_on_second(
                path, name, state, "unreadable", f"cannot read: {e.strerror or e}"
            )
        try:
            fut = self.ingestor.submit(data, self.key, name)
        except IngestClosedError:
            return False
        fut.add_done_callback(lambda _: self._wake.set())
        self._inflight[path] = (fut, rel, state)
        return False

    def _reap(self) -> None:
        """Deal with the files the ingest pool is done with."""
        for path, (fut, rel, state) in list(self._inflight.items()):
            if fut.done():
                del self._inflight[path]
                if self._finish(path, rel, state, fut):
                    self._seen.pop(path, None)

    def _finish(self, path: Path, rel: Path, state: tuple[int, int], fut: Future[Any]) -> bool:
        """True when the file is dealt with (stored or refused); False to try again later."""
        name = str(rel)
        try:
            fut.result()
        except ImageRejectedError as e:
            if e.kind in RETRY_KINDS:  # or a writer that paused longer than settle_s
                return self._refuse_on_second(path, name, state, e.kind, e.reason)
            self._refuse(path, name, state, e.kind, e.reason)
            return True
        except (IngestClosedError, DecodeBusyError, CancelledError):
            return False
        except (OSError, sqlite3.Error) as e:
            log.error(
                "cannot store %s now (%s); it stays in %s and will be retried",
                printable(name),
                e,
                self.root,
            )
            return False
        except Exception as e:
            log.exception("unexpected error taking %s", printable(name))
            return self._refuse_on_second(path, name, state, "internal", f"{type(e).__name__}: {e}")
        self._suspect.pop(path, None)
        if self.cfg.delete_accepted:
            try:
                path.unlink()
                return True
            except OSError as e:
                log.warning("stored %s but cannot remove it: %s", printable(name), e)
        self._done[path] = state
        return True

    def _refuse_on_second(
        self, path: Path, name: str, state: tuple[int, int], kind: str, why: str
    ) -> bool:
        """Refuse only if the same file, unchanged, fails again at the next look."""
        suspect = self._suspect.get(path)
        if suspect is None or suspect[0] != state:
            self._suspect[path] = (state, time.monotonic())
            log.info(
                "%s: %s; looking again in %.0fs before refusing it",
                printable(name),
                why,
                self.recheck_s,
            )
            return False
        self._suspect.pop(path, None)
        self._refuse(path, name, state, kind, why)
        return True

    def _refuse(self, path: Path, name: str, state: tuple[int, int], kind: str, why: str) -> None:
        log.warning("rejected %s: %s (%s)", printable(name), why, kind)
        try:
            self.reject(path, kind, why)
        except OSError as e:
            log.error("cannot move rejected %s out of %s: %s", printable(name), self.root, e)
            self._done[path] = state

    def _link_roots(self) -> list[Path] | None:
        """Where a followed link may point; None: links are not followed."""
        if not self.cfg.follow_symlinks:
            return None
        return [Path(os.path.realpath(r)) for r in (self.root, *self.cfg.symlink_roots)]


def walk(root: Path, depth: int = 0) -> Iterator[Path]:
    """Every entry that is not a directory, without following links into other folders."""
    with os.scandir(root) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH and not entry.name.startswith("."):
                    yield from walk(Path(entry.path), depth + 1)
            else:
                yield Path(entry.path)


def read_file(path: Path, max_bytes: int, link_roots: list[Path] | None) -> bytes:
    """A regular file's bytes, at most `max_bytes`; anything else is an `ImageRejectedError`
    (kinds `symlink`, `not_a_file`, `too_large`) before more than a chunk over the cap is read.
    A link is followed only with `link_roots`, and only to a file inside one of them."""
    target = path
    if path.is_symlink():
        if link_roots is None:
            raise ImageRejectedError(
                "symlink", "a symbolic link (capture.folder.follow_symlinks is off)"
            )
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(r) for r in link_roots):
            raise ImageRejectedError(
                "symlink", f"a link to {printable(str(real))}, outside capture.folder.symlink_roots"
            )
        target = real
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageRejectedError(
                "not_a_file", "not a regular file (a device, FIFO, socket or folder)"
            )
        if st.st_size > max_bytes:
            raise ImageRejectedError(
                "too_large", f"{st.st_size} bytes is over capture.folder.max_bytes ({max_bytes})"
            )
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ImageRejectedError(
                    "too_large", f"more than capture.folder.max_bytes ({max_bytes}) bytes"
                )
        return b"".join(chunks)
    finally:
        os.close(fd)


def reject_file(root: Path, path: Path, kind: str, reason: str) -> None:
    """Move a refused file into `rejected/` under a safe, short name, with
    `<name>.reason.txt` beside it holding the original name (escaped) and the reason."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.name).lstrip(".")[-100:] or "file"
    target = root / "rejected" / f"{stamp}-{safe}"
    n = 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        target = root / "rejected" / f"{stamp}-{n}-{safe}"
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.with_name(target.name + ".reason.txt").write_text(  # first: whoever sees the file
        f"file: {printable(str(path), 4096)}\nkind: {kind}\nreason: {reason}\n"  # sees why
        f"rejected_at: {stamp}\n"
    )
    shutil.move(str(path), target)
