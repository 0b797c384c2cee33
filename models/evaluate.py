"""`s3e-train eval`: evaluate whichever models a folder holds on a data set, into one JSON report.

Metrics follow what the data supports: captions always give BLEU/ROUGE-L/CIDEr; generated meta
adds object F1 (shapes) or finding accuracy (chest); masks add mIoU; meta labels add VAE cluster
purity and, for data with normal/abnormal images, anomaly AUROC. Captioners under `ablation/`
are evaluated on the same split for the attention ablation table.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from models import grounding, metrics, search_eval
from models.captioner import Captioner
from models.config import ModelsConfig
from models.data.dataset import Dataset, load_dataset
from models.data.domains import DOMAINS
from models.domain_training import ood_scores
from models.search_eval import eval_embedder
from models.segmenter import area_fractions
from models.store import has_model, load_captioner, load_segmenter, load_vae
from models.vae_training import eval_labels, image_labels, vae_outputs

log = logging.getLogger(__name__)

ABLATION_MINIMUM = ("shapes",)
"""Domains where each attention variant must beat `none` in BLEU-4 and CIDEr (on 2-3 objects);
elsewhere the ablation is reported, not required."""
MINIMUMS = {
    "shapes": {
        "captioner.object_f1": 0.90,
        "segmenter.mIoU": 0.85,
        "vae.label_macro_f1": 0.95,
    },
    "chest": {
        "captioner.finding_accuracy": 0.90,
        "segmenter.mIoU": 0.85,
        "vae.anomaly_auroc": 0.95,
        "vae.label_macro_f1": 0.95,
    },
}
MAXIMUMS = {
    "chest": {"vae.none_given_to_findings": 0.01, "vae.out_of_domain_rate": 0.02},
    "shapes": {"vae.out_of_domain_rate": 0.02},
}
"""Rates that must stay at or below these: `normal` given to an image with a finding, and
held-out in-domain images flagged out of domain."""
ABLATION_KEYS = ("BLEU-4", "CIDEr", "object_f1", "finding_accuracy")


def domain_scores(domain: str, captions: list[str], ds: Dataset) -> dict[str, float]:
    if ds.meta is None or not ds.meta or not all(ds.meta):
        return {}
    if domain == "shapes" and "objects" in ds.meta[0]:
        return metrics.object_f1(captions, ds.meta)
    if domain == "chest" and "findings" in ds.meta[0]:
        return metrics.finding_accuracy(captions, ds.meta)
    return {}


def eval_captioner(
    cap: Captioner, ds: Dataset, domain: str, beam_width: int | None
) -> dict[str, Any]:
    start = time.monotonic()
    generated = cap.caption(ds.images, beam_width)
    texts = [g.text for g in generated]
    report: dict[str, Any] = {
        "attention": cap.cfg.attention,
        "sentinel": cap.cfg.sentinel,
        "beam_width": beam_width or cap.cfg.beam_width,
        **metrics.caption_scores(ds.captions, texts),
        **domain_scores(domain, texts, ds),
        "seconds": round(time.monotonic() - start, 1),
    }
    ground = grounding.score_captions(domain, ds, generated, cap.grid)
    if ground is not None:
        report["grounding"] = ground
    if domain == "shapes" and ds.meta and "n_objects" in ds.meta[0]:
        groups = {"1": [1], "2-3": [2, 3]}
        report["by_objects"] = {}
        for name, counts in groups.items():
            idx = [i for i, m in enumerate(ds.meta) if m["n_objects"] in counts]
            sub = ds.subset(idx)
            sub_texts = [texts[i] for i in idx]
            report["by_objects"][name] = {
                "images": len(idx),
                **metrics.caption_scores(sub.captions, sub_texts),
                **domain_scores(domain, sub_texts, sub),
            }
    report["examples"] = [
        {"file_name": ds.file_names[i], "caption": texts[i], "references": ds.captions[i]}
        for i in range(min(5, len(ds)))
    ]
    return report


def eval_segmenter(model: Any, ds: Dataset, class_names: list[str]) -> dict[str, Any]:
    assert ds.masks is not None
    conf = np.zeros((len(class_names),) * 2, np.int64)
    for i in range(0, len(ds), 128):
        pred = np.argmax(model(tf.constant(ds.images[i : i + 128]), training=False).numpy(), -1)
        conf += metrics.confusion(pred, ds.masks[i : i + 128], len(class_names))
        if i == 0:
            example = area_fractions(pred[0].astype(np.uint8), class_names)
    return {**metrics.iou_scores(conf, class_names), "example_area_fractions": example}


def eval_vae(folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
    """Labels (macro-F1, per label, normal given to findings), anomaly AUROC and the share
    of these (in-domain) images flagged out of domain."""
    enc, dec, space = load_vae(folder, cfg)
    assert cfg.vae is not None
    o = vae_outputs(enc, dec, cfg.vae, ds.images)
    anomaly = space.anomaly(o.errors, o.probs if o.probs.size else None)
    ood = ood_scores(folder, cfg, ds.images, o, space)
    report: dict[str, Any] = {
        "mean_squared_error": float(o.mse.mean()),
        "anomaly_threshold": space.threshold,
        "counterfactual_anomaly": space.counterfactual,
        "out_of_domain_rate": float((ood > 1).mean()),
        "out_of_domain_score_p99": float(np.percentile(ood, 99)),
    }
    per_image = image_labels(ds)
    if cfg.vae.labels and per_image is not None:
        report.update(eval_labels(o.probs, cfg.vae.labels, cfg.vae.none_label, per_image))
    if ds.meta and all("normal" in m for m in ds.meta):
        abnormal = np.array([not m["normal"] for m in ds.meta])
        if abnormal.any() and not abnormal.all():
            report["anomaly_auroc"] = metrics.auroc(anomaly, abnormal)
            report["mean_anomaly_normal"] = float(anomaly[~abnormal].mean())
            report["mean_anomaly_abnormal"] = float(anomaly[abnormal].mean())
    return report


def eval_ood(folder: Path, cfg: ModelsConfig) -> dict[str, Any]:
    """Out-of-domain flags on images that are not of the domain (photographs, textures, the
    other domain), preprocessed as the device does."""
    from PIL import Image

    from models.ood import ood_images

    enc, dec, space = load_vae(folder, cfg)
    assert cfg.vae is not None
    names, arrays = [], []
    for name, im in ood_images(cfg.domain):
        pil = Image.fromarray(im).convert("RGB" if cfg.image.channels == 3 else "L")
        x = np.asarray(pil.resize((cfg.image.size,) * 2, Image.Resampling.BILINEAR), np.float32)
        arrays.append((x / 255.0).reshape(cfg.image.size, cfg.image.size, cfg.image.channels))
        names.append(name)
    images = np.stack(arrays)
    scores = ood_scores(folder, cfg, images, vae_outputs(enc, dec, cfg.vae, images), space)
    missed = [n for n, s in zip(names, scores, strict=True) if s <= 1]
    return {
        "images": len(names),
        "flagged": int((scores > 1).sum()),
        "missed": missed,
        "min_score": float(scores.min()),
    }


def label_study(folders: dict[str, Path], data: Path) -> dict[str, Any]:
    """Label macro-F1 and `normal` given to findings of VAEs trained with labels from
    different fractions of their images, on the same held-out split."""
    out: dict[str, Any] = {}
    for name, folder in folders.items():
        cfg = ModelsConfig.load(folder)
        ds = load_dataset(data, cfg.image.size, cfg.image.channels)
        rep = eval_vae(folder, cfg, ds)
        out[name] = {
            k: rep[k]
            for k in ("label_macro_f1", "none_given_to_findings", "label_f1", "anomaly_auroc")
            if k in rep
        }
    return out


def _ablation(
    folder: Path, ds: Dataset, domain: str, main: dict[str, Any], beam: int | None
) -> dict[str, Any]:
    """Each captioner under `ablation/` on the same split: caption scores (on 2-3 objects
    for shapes) and, over all images, the grounding of nouns and attributes."""
    rows = {"shipped": main}
    for sub in sorted((folder / "ablation").glob("*")):
        if has_model(sub, "captioner"):
            log.info("evaluating ablation captioner %s", sub.name)
            rows[sub.name] = eval_captioner(load_captioner(sub), ds, domain, beam)
    table: dict[str, Any] = {}
    for name, row in rows.items():
        src = row.get("by_objects", {}).get("2-3", row)
        table[name] = {
            "attention": row["attention"],
            "sentinel": row["sentinel"],
            **{k: src[k] for k in ABLATION_KEYS if k in src},
        }
        ground = row.get("grounding", {})
        for cls in ("noun", "attribute"):
            got = ground.get("classes", {}).get(cls)
            if got:
                table[name].update({f"{cls}_{m}": got[m] for m in ("pointing", "mass", "chance")})
        if ground.get("non_visual", {}).get("n"):
            table[name]["non_visual_looking"] = ground["non_visual"]["visual"]
    table["split"] = "scenes of 2-3 objects" if domain == "shapes" else "all images"
    return table


def check_minimums(domain: str, report: dict[str, Any]) -> dict[str, Any]:
    """The required minimums (and maximums) for `domain` against the report: value, bound,
    ok."""
    out: dict[str, Any] = {}
    for bounds, kind in ((MINIMUMS, "minimum"), (MAXIMUMS, "maximum")):
        for key, bound in bounds.get(domain, {}).items():
            section, name = key.split(".")
            value = report.get(section, {}).get(name)
            if value is not None:
                ok = value >= bound if kind == "minimum" else value <= bound
                out[key] = {"value": value, kind: bound, "ok": ok}
    if "embedder" in report:
        out.update(search_eval.check(domain, report["embedder"]))
    if "grounding" in report.get("captioner", {}):
        out.update(grounding.check(report["captioner"]["grounding"]))
    ood = report.get("vae", {}).get("out_of_domain_test")
    if ood:
        out["vae.out_of_domain_flagged"] = {
            "value": ood["flagged"] / ood["images"],
            "minimum": 1.0,
            "ok": not ood["missed"],
        }
    table = report.get("ablation")
    if domain in ABLATION_MINIMUM and table and "none" in table:
        for name, row in table.items():
            if isinstance(row, dict) and name != "none" and row["attention"] != "none":
                ok = all(row[m] > table["none"][m] for m in ("BLEU-4", "CIDEr"))
                out[f"ablation.{name}>none"] = {"ok": ok}
    return out


def evaluate(
    folder: Path, data: Path, beam_width: int | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Evaluate every model found in `folder` on the data set in `data`."""
    folder = Path(folder)
    cfg = ModelsConfig.load(folder)
    ds = load_dataset(data, cfg.image.size, cfg.image.channels, limit=limit, progress=True)
    report: dict[str, Any] = {
        "models": str(folder),
        "data": str(data),
        "domain": cfg.domain,
        "images": len(ds),
        "skipped_images": [{"file_name": f, "reason": r} for f, r in ds.skipped],
    }
    if has_model(folder, "captioner"):
        log.info(
            "evaluating captioner (%s attention) on %d images", cfg.captioner.attention, len(ds)
        )  # type: ignore[union-attr]
        report["captioner"] = eval_captioner(
            load_captioner(folder, cfg), ds, cfg.domain, beam_width
        )
        if (folder / "ablation").is_dir():
            report["ablation"] = _ablation(folder, ds, cfg.domain, report["captioner"], beam_width)
    if has_model(folder, "segmenter"):
        if ds.masks is None:
            log.info("no masks in %s: segmenter not evaluated", data)
        else:
            log.info("evaluating segmenter")
            report["segmenter"] = eval_segmenter(
                load_segmenter(folder, cfg), ds, cfg.segmenter.class_names
            )  # type: ignore[union-attr]
    if has_model(folder, "embedder"):
        log.info("evaluating the text-image model as search")
        report["embedder"] = eval_embedder(folder, cfg, ds)
    if has_model(folder, "vae"):
        log.info("evaluating vae")
        report["vae"] = eval_vae(folder, cfg, ds)
        if cfg.domain in DOMAINS:
            report["vae"]["out_of_domain_test"] = eval_ood(folder, cfg)
    report["minimums"] = check_minimums(cfg.domain, report)
    return report
