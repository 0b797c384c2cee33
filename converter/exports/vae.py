"""The VAE: encoder (with its label head) and decoder graphs, its calibration as an asset;
label macro-F1, anomaly AUROC, out-of-domain rate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from converter.export import Feed, Graph
from converter.exports.base import Export
from core.domain import DOMAIN_FILE, DOMAIN_MODELS
from core.latent import LATENT_FILE
from edge.analysis.bundle import Bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.vae import VaeOutput
from models import metrics
from models.config import ModelsConfig
from models.data.dataset import Dataset
from models.evaluate import eval_vae
from models.store import has_model, load_vae
from models.vae_training import eval_labels, image_labels

KEEP = ("label_macro_f1", "anomaly_auroc", "out_of_domain_rate")


class VaeExport(Export):
    key = "vae"
    guarded = ("anomaly_auroc", "label_macro_f1")

    def available(self, folder: Path, cfg: ModelsConfig) -> bool:
        return has_model(folder, "vae") and cfg.vae is not None

    def graphs(self, folder: Path, cfg: ModelsConfig) -> list[Graph]:
        enc, dec, _ = load_vae(folder, cfg)
        labels = ["label_logits"] if cfg.vae and cfg.vae.labels else []
        return [
            Graph("vae_encoder", enc, ["mu", "log_var", *labels]),
            Graph("vae_decoder", dec, ["reconstruction"]),
        ]

    def settings(self, cfg: ModelsConfig) -> dict[str, Any]:
        assert cfg.vae is not None
        return {
            "latent_dim": cfg.vae.latent_dim,
            "anomaly_pool": cfg.vae.anomaly_pool,
            "labels": list(cfg.vae.labels),
            "none_label": cfg.vae.none_label,
        }

    def assets(self, folder: Path, cfg: ModelsConfig, out: Path) -> dict[str, str]:
        shutil.copy(folder / LATENT_FILE, out / LATENT_FILE)
        written = {"vae_latent": LATENT_FILE}
        if (folder / DOMAIN_FILE).exists():
            shutil.copy(folder / DOMAIN_FILE, out / DOMAIN_FILE)
            written["domain_model"] = DOMAIN_FILE
        return written

    def shared_models(self, folder: Path) -> list[str]:
        """The out-of-domain model reads the segmenter's and the captioner encoder's outputs
        too (run once an image for all outputs)."""
        return list(DOMAIN_MODELS) if (Path(folder) / DOMAIN_FILE).exists() else []

    def feeds(
        self, graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
    ) -> dict[str, list[Feed]]:
        out = graphs["vae_encoder"].model(tf.constant(images[:limit]), training=False)
        mu = out[0].numpy()
        if "labels" in graphs["vae_decoder"].inputs:
            probs = tf.sigmoid(out[2]).numpy()
            decoder = [{"z": m[None], "labels": p[None]} for m, p in zip(mu, probs, strict=True)]
        else:
            decoder = [{"z": m[None]} for m in mu]
        return {"vae_encoder": [{"image": x[None]} for x in images[:limit]], "vae_decoder": decoder}

    def reference(self, folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
        report = eval_vae(folder, cfg, ds)
        return {k: report[k] for k in KEEP if k in report}

    def device(self, bundle: Bundle, models: BundleModels, ds: Dataset) -> dict[str, Any]:
        output = VaeOutput(bundle)
        space = output.space
        results = [output.infer(models.runners, x) for x in ds.images]
        errors = np.array([r[2] for r in results])
        ood = np.array(
            [
                output.ood(models.runners, x, r[3], r[0])
                for x, r in zip(ds.images, results, strict=True)
            ]
        )
        out: dict[str, Any] = {"out_of_domain_rate": float((ood > 1).mean())}
        per_image = image_labels(ds)
        probs = np.stack([r[1] for r in results])
        if space.labels and per_image is not None:
            got = eval_labels(probs, space.labels, space.none_label, per_image)
            out["label_macro_f1"] = got["label_macro_f1"]
        if ds.meta and all("normal" in m for m in ds.meta):
            abnormal = np.array([not m["normal"] for m in ds.meta])
            if abnormal.any() and not abnormal.all():
                out["anomaly_auroc"] = metrics.auroc(space.anomaly(errors, probs), abnormal)
        return out
