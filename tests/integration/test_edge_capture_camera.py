"""The camera source through OpenCV on a real video file: interval and scene-change triggers,
and reopening with back-off when the stream is not there."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.common import wait_until

from edge.config import CameraCaptureConfig

cv2 = pytest.importorskip("cv2", reason="the camera source needs OpenCV (test extra)")
from support.media import write_video  # noqa: E402


class Collector:
    def __init__(self) -> None:
        self.frames: list[tuple[bytes, str, str]] = []

    def ingest(self, data: bytes, source: str, name: str = "") -> str:
        self.frames.append((data, source, name))
        return str(len(self.frames))

    def submit(self, data: bytes, source: str, name: str = "") -> Any:
        raise AssertionError("the camera ingests frame by frame")

    def reject(self, path: Path, kind: str, reason: str) -> None:
        raise AssertionError("camera frames are never rejected")


def run_source(cfg: CameraCaptureConfig, timeout: float = 30) -> tuple[Any, Collector]:
    from edge.capture.camera import CameraSource

    sink = Collector()
    src = CameraSource(cfg, sink, sink.reject)
    src.start()
    assert src.finished.wait(timeout)
    src.stop()
    return src, sink


def test_one_frame_every_interval_by_the_video_clock(tmp_path: Path):
    video = write_video(tmp_path / "v.avi", seconds=10)
    _, sink = run_source(CameraCaptureConfig(url=str(video), interval_s=2.0))
    times = [float(name.rsplit("@", 1)[1].rstrip("s")) for _, _, name in sink.frames]
    assert len(times) == 5
    assert np.allclose(np.diff(times), 2.0, atol=0.15)
    assert all(src == "camera" for _, src, _ in sink.frames)
    assert cv2.imdecode(np.frombuffer(sink.frames[0][0], np.uint8), cv2.IMREAD_COLOR).shape == (
        48,
        64,
        3,
    )


def test_scene_change_triggers_a_frame_and_a_static_scene_does_not(tmp_path: Path):
    video = write_video(tmp_path / "v.avi", seconds=6, cut_at=3.0)
    _, sink = run_source(CameraCaptureConfig(url=str(video), interval_s=0, scene_change=0.1))
    times = [float(name.rsplit("@", 1)[1].rstrip("s")) for _, _, name in sink.frames]
    assert len(times) == 2  # the first frame, then the cut
    assert abs(times[1] - 3.0) < 0.2


def test_a_stream_that_is_not_there_is_retried_with_back_off_until_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from edge.capture.camera import CameraSource

    def refused() -> int:
        return sum("cannot be opened" in r.getMessage() for r in caplog.records)

    caplog.set_level(logging.WARNING, "s3e.capture.camera")
    target = tmp_path / "late.avi"
    sink = Collector()
    cfg = CameraCaptureConfig(
        url=str(target), interval_s=1.0, reconnect_min_s=0.2, reconnect_max_s=0.4
    )
    src = CameraSource(cfg, sink, sink.reject)
    src.start()
    wait_until(lambda: refused() >= 3, 20, "several attempts to open it")
    assert sink.frames == [] and not src.finished.is_set()
    write_video(tmp_path / "tmp.avi", seconds=3).rename(target)
    assert src.finished.wait(20)
    src.stop()
    assert len(sink.frames) == 3


def test_camera_frames_reach_the_index(edge_config: Any, daemon_factory: Any, tmp_path: Path):
    video = write_video(tmp_path / "v.avi", seconds=4, cut_at=2.0)
    d = daemon_factory(
        edge_config(capture__camera__url=str(video), capture__camera__interval_s=1.0)
    )
    wait_until(lambda: d.indexes.keyword.num_docs == 4, 30, "4 camera frames indexed")
    rec = next(d.store.iter_analysed())
    assert rec.source == "camera" and rec.ext == "jpg" and rec.analysis["caption"]["text"]
