"""The store's files: originals and derived files under the data folder, written atomically
and made durable in groups.

Durability is one `syncfs` of the data's file system on Linux for a whole group of files
(instead of an fsync of each file and of its folder), so parallel ingest costs a few fsyncs
per group, not per image.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None  # not Linux: each file and folder is fsynced instead


_SYNCFS = _load_syncfs()


class Files:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("originals", "derived", "rejected", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        """Remove temp files of writers that died (a kill -9 mid-write); names end in the pid."""
        for f in (self.root / "tmp").iterdir():
            pid = f.name.rsplit(".", 2)[-2] if f.name.count(".") >= 2 else ""
            if not pid.isdigit() or not _alive(int(pid)):
                f.unlink(missing_ok=True)

    def original_path(self, rid: str, ext: str) -> Path:
        return self.root / "originals" / rid[:2] / f"{rid}.{ext}"

    def derived_path(self, rid: str, suffix: str) -> Path:
        """A derived file: "thumb.jpg", or an output's file (e.g. "mask.png")."""
        return self.root / "derived" / rid[:2] / f"{rid}.{suffix}"

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Temp file in the same file system, then rename: no reader sees half a file. Not
        durable yet: `sync` makes it so."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "tmp" / f"{path.name}.{os.getpid()}.{threading.get_ident()}"
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def sync(self, files: list[Path]) -> None:
        """Make `files` (and their renames) durable: one syncfs for all of them."""
        if _SYNCFS is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _SYNCFS(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"syncfs of {self.root}: {os.strerror(err)}")
            finally:
                os.close(fd)
            return
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in {p.parent for p in files} | {p.parent.parent for p in files}:
            _fsync_dir(folder)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
