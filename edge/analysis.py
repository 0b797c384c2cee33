"""One preprocessed image through the bundle's three models, into an `Analysis` record.

Labels are what search filters and facets on: the segment classes present (scored by area),
the VAE's labels (`kind` "vae", its probability as score), and `anomalous` when the anomaly
score is above 1. An image the VAE finds out of the bundle's domain gets the single label
`out_of_domain` instead: its caption and model labels would be confident nonsense.
"""

from __future__ import annotations

import time

import numpy as np

from edge.bundle import Bundle, BundleError
from edge.config import ModelConfig
from edge.imaging import mask_png
from edge.inference import BundleModels
from edge.store import Analysis
from models.latent import LatentSpace

MIN_SEGMENT_FRACTION = 0.005


class Analyser:
    """Interpreters of one bundle; not thread-safe. The daemon runs each in a process of its
    own (`edge.worker.AnalyserProcess`)."""

    def __init__(self, bundle: Bundle, cfg: ModelConfig) -> None:
        self.bundle = bundle
        self.models = BundleModels(
            bundle,
            threads=cfg.threads,
            runtime=cfg.runtime or None,
            accelerator=cfg.accelerator,
            gpu_delegate=cfg.gpu_delegate,
        )
        self.placement = dict(self.models.placement)
        self.fallback_reason = self.models.fallback_reason
        self.runtime = self.models.runtime
        self.beam_width = cfg.beam_width or None
        self.class_names: list[str] = list(bundle.doc["segmenter"]["class_names"])
        if self.models.latent is None:
            raise BundleError(f"{bundle.root}: the daemon needs a bundle with the VAE")
        self.latent = LatentSpace(**self.models.latent)

    def analyse(self, x: np.ndarray) -> tuple[Analysis, bytes]:
        """The record's model fields and the PNG class mask, with per-stage milliseconds."""
        t0 = time.perf_counter()
        cap = self.models.caption(x, self.beam_width)
        t1 = time.perf_counter()
        classes = self.models.segment(x)
        t2 = time.perf_counter()
        vae = self.models.vae(x)
        t3 = time.perf_counter()

        fractions = np.bincount(classes.ravel(), minlength=len(self.class_names)) / classes.size
        segments = [
            {"class": name, "fraction": round(float(f), 4)}
            for name, f in zip(self.class_names, fractions, strict=False)
            if name != "background" and f >= MIN_SEGMENT_FRACTION
        ]
        anomaly = float(self.latent.anomaly(np.array([vae.anomaly_error]))[0])
        ood = float(self.latent.ood_score(np.array([vae.mse]), vae.mu[None])[0])
        labels = [{"name": s["class"], "score": s["fraction"], "kind": "segment"} for s in segments]
        labels += [{"name": name, "score": round(p, 4), "kind": "vae"}
                   for name, p in self.latent.label(vae.probs)]  # fmt: skip
        if anomaly > 1.0:
            labels.append({"name": "anomalous", "score": round(anomaly, 4), "kind": "anomaly"})
        if ood > 1.0:
            labels = [{"name": "out_of_domain", "score": round(ood, 4), "kind": "ood"}]
        mask = mask_png(classes, len(self.class_names))
        t4 = time.perf_counter()
        timings = {
            "caption_ms": (t1 - t0) * 1e3,
            "segment_ms": (t2 - t1) * 1e3,
            "vae_ms": (t3 - t2) * 1e3,
            "postprocess_ms": (t4 - t3) * 1e3,
        }
        return (
            Analysis(
                caption=cap.text,
                words=cap.tokens,
                attention=cap.attention,
                visual=[round(float(v), 4) for v in cap.visual],
                labels=labels,
                segments=segments,
                anomaly=anomaly,
                out_of_domain=ood > 1.0,
                ood_score=ood,
                latent=vae.mu,
                timings={k: round(v, 3) for k, v in timings.items()},
                accelerators=dict(self.models.placement),
            ),
            mask,
        )
