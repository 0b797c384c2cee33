"""`vae`: the semi-supervised VAE's labels (with their probabilities), its anomaly score, the
out-of-domain verdict, and the latent that "similar images" compares.

The calibration (label thresholds, anomaly and out-of-domain percentiles) is the bundle's
`vae_latent` asset, fitted on the training images (`core.latent`). A bundle with a
`domain_model` asset (`core.domain`) decides out-of-domain by it instead, from the VAE's,
the segmenter's and the captioner encoder's outputs on the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.domain import DomainModel, pixel_signals, segmenter_entropy
from core.latent import LatentSpace, mean_squared_error, reconstruction_error, sigmoid
from edge.analysis.outputs.base import (
    OOD_ABOVE,
    OUT_OF_DOMAIN,
    Label,
    Output,
    OutputFields,
    Produced,
)
from edge.analysis.runtime import Runner


class VaeLabel(OutputFields):
    name: str
    score: float


class VaeFields(OutputFields):
    labels: list[VaeLabel]
    anomaly: float
    """Reconstruction error / its calibrated percentile (with a none label: at least the
    strongest finding's probability / its threshold): above 1 is unusual."""
    out_of_domain: bool
    ood_score: float


class VaeOutput(Output):
    key = "vae"
    Fields = VaeFields
    VERDICT = ("anomaly", "out_of_domain", "ood_score")

    def __init__(self, bundle: Any) -> None:
        super().__init__(bundle)
        self.space = LatentSpace(**bundle.asset("vae_latent"))
        self.domain = (
            DomainModel(**bundle.asset("domain_model"))
            if "domain_model" in bundle.doc.assets
            else None
        )
        self.pool = int(self.settings["anomaly_pool"])

    def infer(
        self, runners: dict[str, Runner], x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(latent mean, label probabilities, anomaly error, mean squared error)."""
        x = x[None].astype(np.float32)
        enc = runners["vae_encoder"](image=x)
        mu, decode = enc["mu"], runners["vae_decoder"]
        if "label_logits" not in enc:
            recon = decode(z=mu)["reconstruction"]
            error = float(reconstruction_error(x, recon, self.pool)[0])
            return mu[0], np.zeros(0, np.float32), error, float(mean_squared_error(x, recon)[0])
        probs = sigmoid(enc["label_logits"]).astype(np.float32)
        recon = decode(z=mu, labels=probs)["reconstruction"]
        anomaly = recon
        if self.space.counterfactual:  # decoded as if it had no finding
            anomaly = decode(z=mu, labels=np.zeros_like(probs))["reconstruction"]
        error = float(reconstruction_error(x, anomaly, self.pool)[0])
        return mu[0], probs[0], error, float(mean_squared_error(x, recon)[0])

    def ood(self, runners: dict[str, Runner], x: np.ndarray, mse: float, mu: np.ndarray) -> float:
        """Out-of-domain score (above 1: out): by the domain model, or the VAE's signals."""
        if self.domain is None:
            return float(self.space.ood_score(np.array([mse]), mu[None])[0])
        distance = self.space.mahalanobis(mu[None])
        x1 = x[None].astype(np.float32)
        entropy = segmenter_entropy(runners["segmenter"](image=x1)["logits"][0])
        regions = runners["captioner_encoder"](image=x1)["regions"][0].mean(axis=0)
        v = self.domain.vectors(
            np.array([pixel_signals(x)]),
            np.array([mse]),
            distance,
            np.array([entropy]),
            regions[None],
        )
        return float(self.domain.score(v)[0])

    def run(self, runners: dict[str, Runner], x: np.ndarray) -> Produced:
        mu, probs, error, mse = self.infer(runners, x)
        ood = self.ood(runners, x, mse, mu)
        fields = VaeFields(
            labels=[VaeLabel(name=n, score=round(p, 4)) for n, p in self.space.label(probs)],
            anomaly=round(float(self.space.anomaly(np.array([error]), probs[None])[0]), 4),
            out_of_domain=ood > OOD_ABOVE,
            ood_score=round(ood, 4),
        )
        return Produced(fields, blobs={"latent": np.asarray(mu, np.float32).tobytes()})

    @classmethod
    def labels(cls, f: Any) -> list[Label]:
        out = [Label(name=lab.name, score=lab.score, kind="vae") for lab in f.labels]
        if f.anomaly > 1.0:
            out.append(Label(name="anomalous", score=f.anomaly, kind="anomaly"))
        if f.out_of_domain:
            out.append(Label(name=OUT_OF_DOMAIN, score=f.ood_score, kind="ood"))
        return out

    @classmethod
    def anomaly(cls, f: Any) -> float | None:
        return float(f.anomaly)

    @classmethod
    def ood_score(cls, f: Any) -> float | None:
        return float(f.ood_score)
