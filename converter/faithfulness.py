"""How faithful a converted bundle is: per-tensor error and task metrics against Keras.

Both sides see the same held-out images. Tensor errors compare each TFLite model with its Keras
graph on identical inputs; task metrics run the device pipeline (`edge.inference`, beam search
over the TFLite decoder step included) and the Keras pipeline through the same metric code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from converter.export import Feed, Graph
from edge.inference import BundleModels
from models import metrics
from models.data.dataset import Dataset
from models.data.tokens import END, SPECIALS, START
from models.evaluate import domain_scores
from models.grounding import score_captions
from models.latent import LatentSpace
from models.vae_training import eval_labels, image_labels

# A point is 0.01 of the raw score, as papers print these metrics x100 (CIDEr included).
GUARDED = {
    "captioner": ("BLEU-4", "CIDEr", "object_f1", "finding_accuracy"),
    "segmenter": ("mIoU",),
    "vae": ("anomaly_auroc", "label_macro_f1"),
}


def graph_feeds(
    graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
) -> dict[str, list[Feed]]:
    """Realistic inputs for every graph; the decoder step's come from greedy decoding."""
    feeds: dict[str, list[Feed]] = {}
    for name in ("captioner_encoder", "segmenter", "vae_encoder"):
        if name in graphs:
            feeds[name] = [{"image": x[None]} for x in images[:limit]]
    if "vae_encoder" in graphs and "vae_decoder" in graphs:
        out = graphs["vae_encoder"].model(tf.constant(images[:limit]), training=False)
        mu = out[0].numpy()
        if "labels" in graphs["vae_decoder"].inputs:
            probs = tf.sigmoid(out[2]).numpy()
            feeds["vae_decoder"] = [
                {"z": m[None], "labels": p[None]} for m, p in zip(mu, probs, strict=True)
            ]
        else:
            feeds["vae_decoder"] = [{"z": m[None]} for m in mu]
    if "captioner_step" in graphs:
        feeds["captioner_step"] = _step_feeds(graphs, images, max_len, limit)
    return feeds


def _step_feeds(
    graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
) -> list[Feed]:
    regions, keys, h, c = (
        t.numpy() for t in graphs["captioner_encoder"].model(tf.constant(images), training=False)
    )
    step = graphs["captioner_step"].model
    vocab = step.inputs[0].shape[-1]
    eye = np.eye(vocab, dtype=np.float32)
    start, end = SPECIALS.index(START), SPECIALS.index(END)
    tokens = np.full(len(images), start)
    alive = np.ones(len(images), bool)
    out: list[Feed] = []
    for _ in range(max_len):
        onehot = eye[tokens]
        for i in np.flatnonzero(alive):
            out.append(
                {
                    "token_onehot": onehot[i : i + 1],
                    "h": h[i : i + 1],
                    "c": c[i : i + 1],
                    "regions": regions[i : i + 1],
                    "keys": keys[i : i + 1],
                }
            )
        logits, h, c, *_ = (
            t.numpy()
            for t in step(
                [
                    tf.constant(onehot),
                    tf.constant(h),
                    tf.constant(c),
                    tf.constant(regions),
                    tf.constant(keys),
                ],
                training=False,
            )
        )
        tokens = logits.argmax(-1)
        alive &= tokens != end
        if not alive.any():
            break
    rng = np.random.default_rng(0)
    pick = rng.choice(len(out), size=min(limit, len(out)), replace=False)
    return [out[i] for i in sorted(pick)]


def tensor_errors(graph: Graph, runner: Any, feeds: list[Feed]) -> dict[str, dict[str, float]]:
    """Max and mean absolute error per output tensor, TFLite against Keras."""
    errors: dict[str, list[np.ndarray]] = {}
    for feed in feeds:
        got = runner(**feed)
        for name, value in graph.keras_outputs(feed).items():
            errors.setdefault(name, []).append(np.abs(got[name].astype(np.float64) - value))
    return {
        name: {
            "max_abs": float(max(e.max() for e in errs)),
            "mean_abs": float(np.mean([e.mean() for e in errs])),
        }
        for name, errs in errors.items()
    }


def device_task_metrics(models: BundleModels, ds: Dataset, domain: str) -> dict[str, Any]:
    """The task metrics of the device pipeline on `ds`."""
    out: dict[str, Any] = {}
    names = models.runners
    if "captioner_step" in names:
        captions = [models.caption(x) for x in ds.images]
        texts = [c.text for c in captions]
        out["captioner"] = {
            **metrics.caption_scores(ds.captions, texts),
            **domain_scores(domain, texts, ds),
        }
        ground = score_captions(domain, ds, captions, int(models.bundle.doc["captioner"]["grid"]))
        if ground is not None:
            out["captioner"]["grounding"] = ground["classes"]
    if "segmenter" in names and ds.masks is not None:
        classes = models.bundle.doc["segmenter"]["class_names"]
        conf = np.zeros((len(classes), len(classes)), np.int64)
        for x, m in zip(ds.images, ds.masks, strict=True):
            conf += metrics.confusion(models.segment(x), m, len(classes))
        out["segmenter"] = {"mIoU": metrics.iou_scores(conf, classes)["mIoU"]}
    if "vae_encoder" in names and models.latent is not None:
        out["vae"] = _device_vae(models, ds)
    return out


def _device_vae(models: BundleModels, ds: Dataset) -> dict[str, Any]:
    space = LatentSpace(**models.latent)  # type: ignore[arg-type]
    results = [models.vae(x) for x in ds.images]
    errors = np.array([r.anomaly_error for r in results])
    ood = space.ood_score(np.array([r.mse for r in results]), np.stack([r.mu for r in results]))
    vae: dict[str, Any] = {"out_of_domain_rate": float((ood > 1).mean())}
    per_image = image_labels(ds)
    if space.labels and per_image is not None:
        probs = np.stack([r.probs for r in results])
        vae.update(eval_labels(probs, space.labels, space.none_label, per_image))
    if ds.meta and all("normal" in m for m in ds.meta):
        abnormal = np.array([not m["normal"] for m in ds.meta])
        if abnormal.any() and not abnormal.all():
            vae["anomaly_auroc"] = metrics.auroc(space.anomaly(errors), abnormal)
    return vae


def drops(reference: dict[str, Any], device: dict[str, Any]) -> dict[str, float]:
    """Points lost (x100) per guarded metric; positive = the device is worse."""
    out = {}
    for section, keys in GUARDED.items():
        for key in keys:
            if key in reference.get(section, {}) and key in device.get(section, {}):
                out[f"{section}.{key}"] = round(
                    100 * (reference[section][key] - device[section][key]), 3
                )
    return out
