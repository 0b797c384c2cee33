"""`camera`: frames from a V4L2 device, an RTSP/HTTP stream or a video file, through OpenCV.

A frame is taken every `interval_s` and/or when the scene changes (mean absolute difference of
a 32x32 greyscale thumbnail against the last frame taken, above `scene_change`). Video files
are timed by their own clock, so a file is sampled as it would be live, at full speed. A stream
that drops is reopened with exponential back-off. OpenCV is optional (`pip install
s3e[camera]`); without it this source fails at start with that advice.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.capture.base import Ingest, Reject
from edge.config import CameraCaptureConfig

log = logging.getLogger("s3e.capture.camera")


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise RuntimeError(
            f"capture.camera needs OpenCV ({e}); install it with: pip install 's3e[camera]'"
        ) from None
    return cv2


class CameraSource:
    key = "camera"
    Config = CameraCaptureConfig

    def __init__(self, cfg: CameraCaptureConfig, ingestor: Ingest, reject: Reject) -> None:
        self.cfg, self.ingestor = cfg, ingestor
        self.cv2 = _cv2()
        url = cfg.url
        self.target: int | str = int(url) if url.isdigit() else url
        self.is_file = isinstance(self.target, str) and Path(url).suffix != "" and "://" not in url
        self._stop = threading.Event()
        self._now = threading.Event()
        self.frames_taken = 0
        self.ended = False
        """A video file played to its end: the thread is done, not dead."""
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture-camera", daemon=True)
        self.beat = time.monotonic()
        self.stall_after_s = cfg.reconnect_max_s + 60.0

    @staticmethod
    def enabled(cfg: CameraCaptureConfig) -> bool:
        return bool(cfg.url)

    @property
    def threads(self) -> list[threading.Thread]:
        return [] if self.ended else [self._thread]

    def start(self) -> None:
        log.info(
            "camera %s: every %ss, scene change %s",
            self.cfg.url,
            self.cfg.interval_s,
            self.cfg.scene_change or "off",
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(10)

    def trigger(self) -> None:
        """Take the next frame whatever the timers say (the MQTT `capture` command)."""
        self._now.set()

    def commands(self) -> dict[str, Any]:
        return {"capture": self._cmd_capture}

    def _cmd_capture(self, request: dict[str, Any]) -> dict[str, Any]:
        self.trigger()
        return {"triggered": 1}

    def _run(self) -> None:
        delay = self.cfg.reconnect_min_s
        try:
            while not self._stop.is_set():
                self.beat = time.monotonic()
                cap = self.cv2.VideoCapture(self.target)
                if not cap.isOpened():
                    cap.release()
                    log.warning(
                        "camera %s cannot be opened; retrying in %.0fs", self.cfg.url, delay
                    )
                    if self._stop.wait(delay):
                        return
                    delay = min(delay * 2, self.cfg.reconnect_max_s)
                    continue
                try:
                    ended, frames = self._read(cap)
                except Exception as e:  # a broken frame or stream: reopen it
                    log.error("camera %s: %s: %s", self.cfg.url, type(e).__name__, e)
                    ended, frames = False, 0
                cap.release()
                if frames:  # back off from the minimum again only once frames flowed
                    delay = self.cfg.reconnect_min_s
                if ended and self.is_file:
                    if self.cfg.loop_file:
                        continue  # play it again, at once
                    self.ended = True
                    log.info(
                        "camera %s: end of file, %d frames taken", self.cfg.url, self.frames_taken
                    )
                    return
                if not self._stop.is_set():
                    log.warning(
                        "camera %s: stream dropped; reconnecting in %.0fs", self.cfg.url, delay
                    )
                    if self._stop.wait(delay):
                        return
                    delay = min(delay * 2, self.cfg.reconnect_max_s)
        finally:
            self.finished.set()

    def _read(self, cap: Any) -> tuple[bool, int]:
        """Take frames until the stream ends (True) or we are stopped (False); and how many
        frames were read."""
        cv2 = self.cv2
        last_t: float | None = None
        last_small: np.ndarray | None = None
        frames = 0
        while not self._stop.is_set():
            self.beat = time.monotonic()
            ok, frame = cap.read()
            if not ok:
                return True, frames
            frames += 1
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3 if self.is_file else time.monotonic()
            small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (32, 32)) / 255.0
            if last_t is None and self.frames_taken and not self._now.is_set():
                last_t, last_small = t, small  # reopened: the interval counts from here
                continue
            take = last_t is None or self._now.is_set()
            if self.cfg.interval_s > 0 and last_t is not None:
                take = take or t - last_t >= self.cfg.interval_s
            if self.cfg.scene_change > 0 and last_small is not None:
                take = take or float(np.abs(small - last_small).mean()) >= self.cfg.scene_change
            if not take:
                continue
            ok, jpeg = cv2.imencode(
                ".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality]
            )
            if not ok:
                continue
            self._now.clear()
            last_t, last_small = t, small  # a frame that cannot be stored is skipped, not retried
            try:
                self.ingestor.ingest(jpeg.tobytes(), self.key, f"{self.cfg.url}@{t:.2f}s")
            except Exception as e:
                log.error("camera frame at %.2fs not stored: %s: %s", t, type(e).__name__, e)
                continue
            self.frames_taken += 1
        return False, frames
