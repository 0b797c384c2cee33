"""Bad input: each kind gets one clear log line, a count in /metrics, the file moved to
`rejected/` with its reason, and the daemon goes on; a file is taken only once written."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from support.bad_images import jpeg_bytes, png_header_only
from support.common import wait_until


def test_every_kind_of_bad_file_is_moved_to_rejected_and_the_daemon_goes_on(
    edge_config: Any,
    daemon_factory: Any,
    chest_images: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    import edge.capture.folder as folder

    cfg = edge_config()
    inbox = Path(cfg.capture.folder.path)
    inbox.mkdir(parents=True)
    bad = {
        "truncated.jpg": jpeg_bytes()[:300],
        "empty.png": b"",
        "bomb.png": png_header_only(20000, 20000),
        "notes.jpg": b"not an image at all\n",
        "locked.png": next(iter(sorted(chest_images["root"].glob("*.png")))).read_bytes(),
    }
    for name, data in bad.items():
        (inbox / name).write_bytes(data)
    (inbox / "locked.png").chmod(0)
    if os.geteuid() == 0:  # root reads a mode-000 file anyway: make the read fail as it would
        real = folder.read_file

        def read(path: Path, *rest: Any) -> bytes:
            if path.name == "locked.png":
                raise PermissionError(13, "Permission denied")
            return real(path, *rest)

        monkeypatch.setattr(folder, "read_file", read)
    caplog.set_level(logging.WARNING, "s3e")
    d = daemon_factory(cfg)
    rejected = Path(cfg.data_dir) / "rejected"
    wait_until(lambda: len(list(rejected.glob("*.reason.txt"))) == 5, 20, "5 rejections")
    good = sorted(chest_images["root"].glob("*.png"))[1]
    shutil.copy(good, inbox / good.name)
    wait_until(lambda: d.indexes.keyword.num_docs == 1, 20, "the good image indexed")

    kinds = {}
    for reason in rejected.glob("*.reason.txt"):
        text = reason.read_text()
        name = reason.name.removesuffix(".reason.txt").split("-", 1)[1]
        kinds[name] = text.split("kind: ")[1].split("\n")[0]
        assert reason.with_name(reason.name.removesuffix(".reason.txt")).exists()
    assert kinds == {
        "truncated.jpg": "corrupt",
        "empty.png": "empty",
        "bomb.png": "too_large",
        "notes.jpg": "not_an_image",
        "locked.png": "unreadable",
    }
    assert list(inbox.iterdir()) == []
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected ")]
    assert len(lines) == 5 and all("\n" not in ln for ln in lines)
    text = d.metrics.render().decode()
    for kind in ("corrupt", "empty", "too_large", "not_an_image", "unreadable"):
        assert f's3e_errors_total{{kind="{kind}"}} 1.0' in text


def test_temp_files_are_ignored_and_a_file_is_taken_only_once_written(
    edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]
):
    cfg = edge_config(capture__folder__settle_s=1.0)
    inbox = Path(cfg.capture.folder.path)
    d = daemon_factory(cfg)
    data = next(iter(sorted(chest_images["root"].glob("*.png")))).read_bytes()
    (inbox / "upload.png.part").write_bytes(data)
    (inbox / ".hidden.png").write_bytes(data)
    growing = inbox / "growing.png"
    with open(growing, "wb") as f:  # written in two halves, 0.5 s apart: never taken half-way
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(0.5)
        f.write(data[len(data) // 2 :])
    wait_until(lambda: d.indexes.keyword.num_docs == 1, 20, "the whole file indexed")
    assert (inbox / "upload.png.part").exists() and (inbox / ".hidden.png").exists()
    assert not list((Path(cfg.data_dir) / "rejected").iterdir())
