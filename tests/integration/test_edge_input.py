"""Bad input: each kind gets one clear log line, a count in /metrics, the file moved to
`rejected/` with its reason, and the daemon goes on. Plus decoding details (EXIF, 16-bit)."""

from __future__ import annotations

import io
import logging
import os
import shutil
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from support.common import wait_until

from edge.ingest.imaging import ImageRejectedError, decode, preprocess


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but carries almost no data: a decompression bomb
    as a decoder first sees it, made without allocating the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_bytes(size: tuple[int, int] = (80, 40), **save: Any) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, "JPEG", **save
    )
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (jpeg_bytes()[:300], "corrupt"),
        (png_header_only(20000, 20000), "too_large"),
        (b"hello, I am a text file\n" * 10, "not_an_image"),
    ],
    ids=["zero-byte", "truncated-jpeg", "decompression-bomb", "text-as-jpg"],
)
def test_decode_refuses_bad_input_with_its_kind(data: bytes, kind: str):
    with pytest.raises(ImageRejectedError) as e:
        decode(data, max_pixels=64_000_000)
    assert e.value.kind == kind and e.value.reason


def test_exif_orientation_is_honoured():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    got = decode(jpeg_bytes((80, 40), exif=exif.tobytes()), 10**8)
    assert (got.width, got.height) == (40, 80)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    x = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "PNG")
    got = decode(buf.getvalue(), 10**8)
    arr = preprocess(got.image, {"size": 64, "color_mode": "L", "scale": 1 / 255})
    assert arr.shape == (64, 64, 1)
    assert arr.min() == 0.0 and arr.max() > 0.99 and 0.4 < arr.mean() < 0.6


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
