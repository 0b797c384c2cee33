"""The three models of a bundle on a TFLite runtime: captions by beam search, segmentation, VAE.

This is the device's whole model pipeline after preprocessing, in numpy around interpreters; the
converter uses it to measure what the device will compute, and the daemon to analyse images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.bundle import Bundle
from edge.runtime import (
    Accelerator,
    AcceleratorError,
    CpuAccelerator,
    Runner,
    gpu_accelerator,
    interpreter_module,
)
from models.data.tokens import Vocabulary, detokenize
from models.decoding import beam_search, log_softmax
from models.latent import mean_squared_error, reconstruction_error, sigmoid


@dataclass
class CaptionResult:
    text: str
    tokens: list[str]
    score: float
    attention: np.ndarray
    """(len(tokens), grid, grid): where the decoder looked for each word; each map sums to
    the word's `visual` share."""
    visual: np.ndarray
    """(len(tokens),): how much each word relied on the image (1 - the sentinel's share;
    1.0 for a captioner without a sentinel)."""


@dataclass
class VaeResult:
    mu: np.ndarray
    """The latent mean: "similar images" compare these."""
    probs: np.ndarray
    """Label probabilities (empty for a VAE without labels)."""
    anomaly_error: float
    """Reconstruction error behind the anomaly score (counterfactual where the domain has a
    none label: the image decoded as if it had no finding)."""
    mse: float
    """Mean squared reconstruction error, one of the out-of-domain signals."""


class BundleModels:
    """Runners for every model of a bundle, with the bundle's decoding settings.

    `accelerator` is "cpu", "gpu" (fail with the reason if any model cannot run there) or
    "auto" (the GPU where it works, else the CPU; `fallback_reason` says why). `placement`
    tells which accelerator each model runs on, for `/healthz` and every record.
    """

    def __init__(
        self,
        bundle: Bundle,
        threads: int = 2,
        runtime: str | None = None,
        accelerator: str = "cpu",
        gpu_delegate: str = "",
    ) -> None:
        self.bundle = bundle
        self.runtime = interpreter_module(runtime)[0]
        cpu = CpuAccelerator(threads, runtime)
        gpu: Accelerator | None = None
        self.fallback_reason = ""
        if accelerator in ("gpu", "auto"):
            try:
                gpu = gpu_accelerator(gpu_delegate, threads, runtime)
            except AcceleratorError as e:
                if accelerator == "gpu":
                    raise
                self.fallback_reason = str(e)
        self.runners: dict[str, Runner] = {}
        self.placement: dict[str, str] = {}
        for name, spec in bundle.models.items():
            outputs = [o["name"] for o in spec["outputs"]]
            chosen: Accelerator = cpu
            if gpu is not None:
                try:
                    self.runners[name] = gpu.runner(bundle.model_path(name), outputs)
                    chosen = gpu
                except AcceleratorError as e:
                    if accelerator == "gpu":
                        raise
                    self.fallback_reason, gpu = str(e), None  # the rest would fail alike
            if chosen is cpu:
                self.runners[name] = cpu.runner(bundle.model_path(name), outputs)
            self.placement[name] = chosen.key
        cap = bundle.doc.get("captioner")
        self.vocab = Vocabulary(bundle.asset("vocab")) if cap else None
        self.latent = bundle.asset("vae_latent") if "vae" in bundle.doc else None

    def caption(self, image: np.ndarray, beam_width: int | None = None) -> CaptionResult:
        """Caption one preprocessed image (H, W, C float32 in [0, 1])."""
        cfg = self.bundle.doc["captioner"]
        assert self.vocab is not None
        enc = self.runners["captioner_encoder"](image=image[None].astype(np.float32))
        step_model = self.runners["captioner_step"]
        eye = np.eye(len(self.vocab), dtype=np.float32)
        regions, keys = enc["regions"], enc["keys"]

        def step(
            tokens: np.ndarray, states: tuple[np.ndarray, ...]
        ) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
            outs = [
                step_model(
                    token_onehot=eye[t][None],
                    h=states[0][i : i + 1],
                    c=states[1][i : i + 1],
                    regions=regions,
                    keys=keys,
                )
                for i, t in enumerate(tokens)
            ]
            logits = np.concatenate([o["logits"] for o in outs])
            new = (np.concatenate([o["h"] for o in outs]), np.concatenate([o["c"] for o in outs]))
            alpha = np.concatenate([o["alpha"] for o in outs])
            beta = np.concatenate(
                [o["beta"].reshape(1, 1) if "beta" in o else np.zeros((1, 1)) for o in outs]
            )
            return log_softmax(logits), new, np.concatenate([alpha, beta], axis=1)

        k = beam_width or int(cfg["beam_width"])
        best = beam_search(
            step,
            (enc["h"], enc["c"]),
            self.vocab.start_id,
            self.vocab.end_id,
            k,
            int(cfg["max_len"]),
        )[0]
        words, steps = self.vocab.decode_positions(best.ids)
        att = best.attention[steps]
        grid = int(cfg["grid"])
        maps = att[:, : grid * grid].reshape(len(words), grid, grid)
        return CaptionResult(detokenize(words), words, best.score, maps, 1.0 - att[:, -1])

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class id per pixel (H, W) uint8."""
        logits = self.runners["segmenter"](image=image[None].astype(np.float32))["logits"][0]
        return np.argmax(logits, axis=-1).astype(np.uint8)

    def vae(self, image: np.ndarray) -> VaeResult:
        """Latent mean, label probabilities and the reconstruction errors of one image."""
        x = image[None].astype(np.float32)
        enc = self.runners["vae_encoder"](image=x)
        mu = enc["mu"]
        pool = int(self.bundle.doc["vae"]["anomaly_pool"])
        decode = self.runners["vae_decoder"]
        if "label_logits" not in enc:
            recon = decode(z=mu)["reconstruction"]
            error = float(reconstruction_error(x, recon, pool)[0])
            return VaeResult(mu[0], np.zeros(0, np.float32), error, _mse(x, recon))
        probs = sigmoid(enc["label_logits"]).astype(np.float32)
        recon = decode(z=mu, labels=probs)["reconstruction"]
        anomaly = recon
        if self.latent and self.latent.get("counterfactual"):
            anomaly = decode(z=mu, labels=np.zeros_like(probs))["reconstruction"]
        error = float(reconstruction_error(x, anomaly, pool)[0])
        return VaeResult(mu[0], probs[0], error, _mse(x, recon))


def _mse(x: np.ndarray, recon: np.ndarray) -> float:
    return float(mean_squared_error(x, recon)[0])
