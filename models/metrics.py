"""Task metrics: COCO caption scores, object F1 and finding accuracy, mIoU, AUROC, purity.

Caption n-gram metrics come from `pycocoevalcap` (the COCO caption evaluation code), fed our own
tokenisation because its PTB tokenizer needs Java. The domain metrics parse generated captions
back into the structured ground truth the generators wrote them from.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.tokens import detokenize, tokenize
from models.data.chest import FINDINGS
from models.data.shapes import COLOURS, SHAPES, SIZES

_OBJECT_RE = re.compile(rf"\b({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")
_SIDE, _LEVEL = r"(left|right)", r"(upper|lower)"
_FINDING_RES: dict[str, list[re.Pattern[str]]] = {
    "consolidation": [
        re.compile(rf"\b{_SIDE} {_LEVEL} zone (?:airspace )?(?:consolidation|opacity)\b"),
        re.compile(rf"\bconsolidation in the {_SIDE} {_LEVEL} zone\b"),
    ],
    "nodule": [
        re.compile(rf"\bnodule (?:in|projected over) the {_SIDE} {_LEVEL} zone\b"),
        re.compile(rf"\b{_SIDE} {_LEVEL} zone pulmonary nodule\b"),
    ],
    "effusion": [
        re.compile(rf"\b{_SIDE} pleural effusion\b"),
        re.compile(rf"\b{_SIDE} costophrenic angle\b"),
    ],
    "cardiomegaly": [
        re.compile(r"\b(?:enlarged heart|cardiomegaly|cardiac silhouette is enlarged)\b")
    ],
}
_NORMAL_RE = re.compile(r"\bno acute finding\b")


def _norm(caption: str) -> str:
    return " ".join(tokenize(caption))


def caption_scores(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str]
) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr(-D) of hypotheses against several references each."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: [_norm(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [_norm(h) or "<empty>"] for i, h in enumerate(hypotheses)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
    out.update({"ROUGE-L": float(rouge), "CIDEr": float(cider)})
    return out


def parse_objects(caption: str) -> Counter[tuple[str, str, str]]:
    """(size, colour, shape) mentions in a shapes caption, as a multiset."""
    return Counter(_OBJECT_RE.findall(_norm(caption)))


def object_f1(captions: Sequence[str], metas: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Micro precision/recall/F1 of the object mentions against the ground-truth objects."""
    tp = fp = fn = 0
    for caption, meta in zip(captions, metas, strict=True):
        pred = parse_objects(caption)
        truth = Counter((o["size"], o["colour"], o["shape"]) for o in meta["objects"])
        hit = sum((pred & truth).values())
        tp, fp, fn = tp + hit, fp + sum(pred.values()) - hit, fn + sum(truth.values()) - hit
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"object_precision": precision, "object_recall": recall, "object_f1": f1}


def parse_findings(caption: str) -> set[tuple[str, ...]] | None:
    """Findings named in a chest caption; the empty set for "no acute finding", None for neither."""
    text = _norm(caption).replace(" ,", "")
    found: set[tuple[str, ...]] = set()
    for kind, patterns in _FINDING_RES.items():
        for pattern in patterns:
            found.update((kind, *m.groups()) for m in pattern.finditer(text))
    if found:
        return found
    return set() if _NORMAL_RE.search(text) else None


def truth_findings(meta: dict[str, Any]) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for f in meta["findings"]:
        key = {"effusion": ("side",), "cardiomegaly": ()}.get(f["type"], ("side", "level"))
        out.add((f["type"], *(f[k] for k in key)))
    return out


def finding_accuracy(captions: Sequence[str], metas: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Share of images whose caption names exactly the true findings with their zones/sides
    ("no acute finding" for normals), overall and per finding type."""
    right = 0
    per_type: dict[str, list[int]] = {t: [0, 0] for t in (*FINDINGS, "normal")}
    for caption, meta in zip(captions, metas, strict=True):
        truth, pred = truth_findings(meta), parse_findings(caption)
        ok = pred == truth
        right += ok
        for t in {f[0] for f in truth} or {"normal"}:
            per_type[t][0] += ok
            per_type[t][1] += 1
    out = {"finding_accuracy": right / max(len(captions), 1)}
    out.update({f"finding_accuracy[{t}]": r / n for t, (r, n) in per_type.items() if n})
    return out


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    idx = truth.reshape(-1).astype(np.int64) * n_classes + pred.reshape(-1)
    return np.bincount(idx, minlength=n_classes**2).reshape(n_classes, n_classes)


def iou_scores(conf: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class IoU over the whole split and their mean (background included)."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1) - tp
    ious = {name: float(tp[i] / denom[i]) for i, name in enumerate(class_names) if denom[i] > 0}
    return {
        "mIoU": float(np.mean(list(ious.values()))),
        "iou": ious,
        "pixel_accuracy": float(tp.sum() / conf.sum()),
    }


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if not n_pos or not n_neg:
        raise ValueError("AUROC needs both positive and negative examples")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def purity(assigned: Sequence[str], truth: Sequence[str]) -> float:
    """Share of images whose cluster name equals their own ground-truth label."""
    return float(np.mean([a == t for a, t in zip(assigned, truth, strict=True)]))


def tokens_text(tokens: Sequence[str]) -> str:
    return detokenize(tokens)
