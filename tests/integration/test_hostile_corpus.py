"""A corpus of 300+ hostile inputs, sent through the watched folder and the upload route of one
daemon (a separate process, as a user runs it), with good images mixed in: the daemon stays up,
every hostile input is refused with a reason or taken as the real image it is, every good image
becomes searchable, nothing answers 5xx, and the daemon's peak memory stays bounded. Hostile
DICOM files go both ways, each refused with the kind of refusal it must get, and no refusal
quotes the patient's identity they carry."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from support.common import wait_until
from support.dicom_files import IDENTITY
from support.hostile import folder_extras, good_images, hostile, hostile_dicom
from support.processes import db_count, healthy, start, write_config

from edge.config import EdgeConfig
from edge.ingest.imaging import ImageRejectedError, decode

PEAK_RSS_MB = 600
"""The bound, with 4 uploads at a time (measured: see the README's hardening section)."""


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def corpus_daemon(tmp_path: Path) -> Any:
    from support.common import free_port

    port = free_port()
    (tmp_path / "inbox").mkdir()
    config = write_config(tmp_path, port)
    proc = start(config, tmp_path / "log.txt")
    try:
        wait_until(lambda: healthy(port), 90, "daemon up")
        yield {"proc": proc, "port": port, "tmp": tmp_path}
    finally:
        proc.terminate()
        proc.wait(30)


def test_hostile_corpus_through_folder_and_upload(corpus_daemon: dict[str, Any]):
    tmp, port, proc = corpus_daemon["tmp"], corpus_daemon["port"], corpus_daemon["proc"]
    inbox, outside = tmp / "inbox", tmp / "outside"
    outside.mkdir()
    bad = list(hostile())
    good = list(good_images(16))
    dicom = list(hostile_dicom())
    assert len(bad) >= 300
    extras = folder_extras(inbox, outside)
    for i, (name, data, _) in enumerate(bad[::2]):  # half by the folder
        (inbox / f"{i:03d}-{name}").write_bytes(data)
    for name, data, _, _ in dicom:  # every DICOM both ways
        (inbox / f"dicom-{name}").write_bytes(data)
    for name, data in good[:8]:
        (inbox / name).write_bytes(data)

    def upload(item: tuple[str, bytes]) -> httpx.Response:
        name, data = item
        return httpx.post(
            f"http://127.0.0.1:{port}/images",
            content=data,
            timeout=60,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Filename": name.encode("unicode_escape").decode(),
            },
        )

    items = [(n, d) for n, d, _ in bad[1::2]] + good[8:]
    with cf.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(upload, items + [(n, d) for n, d, _, _ in dicom]))
    statuses = [a.status_code for a in answers[: len(items)]]
    assert not [s for s in statuses if s >= 500], statuses
    for (name, _, _, kind), got in zip(dicom, answers[len(items) :], strict=True):
        assert got.status_code == 400 and got.json()["detail"].startswith(f"{kind}: "), name
    expected = [400 if refused(d) else (200, 201) for _, d in items]
    for (name, _), want, got in zip(items, expected, statuses, strict=True):
        assert got == want or (isinstance(want, tuple) and got in want), (name, got)
    wait_until(lambda: not any(inbox.iterdir()), 120, "the inbox emptied")
    rejected = [
        p for p in (tmp / "data" / "rejected").iterdir() if not p.name.endswith(".reason.txt")
    ]
    assert len(rejected) == sum(refused(d) for _, d, _ in bad[::2]) + len(extras) + len(dicom)
    kinds = {}
    for p in rejected:
        reason = p.with_name(p.name + ".reason.txt").read_text()
        assert re.search(r"^kind: \w+$", reason, re.M) and "reason: " in reason
        assert not quoted_identity(reason), reason
        name, kind = (
            re.findall(rf"^{k}: (?:.*/)?(.*)$", reason, re.M)[0] for k in ("file", "kind")
        )
        kinds[name] = kind
    assert {n: kinds[f"dicom-{n}"] for n, _, _, _ in dicom} == {n: k for n, _, _, k in dicom}
    assert proc.poll() is None and healthy(port)
    wait_until(lambda: db_count(tmp / "data", "status='pending'") == 0, 120, "analysis done")
    for name, data in good:
        rid = hashlib.sha256(data).hexdigest()
        got = httpx.get(f"http://127.0.0.1:{port}/records/{rid}", timeout=10)
        assert got.status_code == 200 and got.json()["status"] == "analysed", name
    wait_until(lambda: _searchable(port) >= len(good), 60, "good images searchable")
    log = (tmp / "log.txt").read_text()
    assert not re.search(r"^ERROR forged", log, re.M)
    assert "Traceback" not in log
    assert not quoted_identity(log)
    peak = vm_hwm_mb(proc.pid)
    total = len(bad) + len(extras) + 2 * len(dicom)
    print(f"daemon peak RSS: {peak:.0f} MB over {total} hostile inputs")
    assert peak < PEAK_RSS_MB


def quoted_identity(text: str) -> list[str]:
    """The patient's identity strings (a name's parts too) found in `text`, in any case."""
    name = IDENTITY["PatientName"].replace("^", " ").split()
    return [v for v in (*IDENTITY.values(), *name[:2]) if v.lower() in text.lower()]


def refused(data: bytes) -> bool:
    """What the daemon must refuse, judged by the same decoder with the default limits."""
    try:
        decode(data, EdgeConfig().limits.max_pixels, EdgeConfig().limits.max_side)
    except ImageRejectedError:
        return True
    return False


def _searchable(port: int) -> int:
    r = httpx.get(f"http://127.0.0.1:{port}/search", params={"limit": 1}, timeout=10)
    return int(r.json()["total"])


def test_the_corpus_has_every_kind_the_review_sent():
    kinds = {k for _, _, k in hostile()}
    for k in (
        "truncated",
        "bit-flipped",
        "bomb header",
        "16-bit, decodes large",
        "float",
        "TGA",
        "huge EXIF (valid)",
        "huge ICC",
        "animated (valid)",
        "long name",
        "newline in the name",
        "polyglot (valid JPEG first)",
    ):
        assert k in kinds, k


def test_the_dicom_cases_are_what_they_say():
    cases = {name: (data, kind) for name, data, _, kind in hostile_dicom()}
    assert {k for _, k in cases.values()} == {
        "corrupt",
        "too_large",
        "multi_frame",
        "not_an_image",
        "unsupported",
        "identifying",
    }
    polyglot = cases["tiff-preamble-broken.dcm"][0]
    tiff = Image.open(io.BytesIO(polyglot))
    tiff.load()  # a whole image to a TIFF reader: it must not be taken as one
    assert tiff.format == "TIFF" and tiff.size == (64, 64)
