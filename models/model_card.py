"""MODEL_CARD.md of a domain's shipped models, written from its evaluation report."""

from __future__ import annotations

from typing import Any

CARD_INTRO = {
    "shapes": (
        "Synthetic scenes of 1-3 coloured shapes (circle, square, triangle; red, green, blue, "
        "yellow, purple; small or large) in distinct cells of a 3x3 grid, on noisy tinted "
        "backgrounds, 64x64 RGB. Captions name each object's size, colour and shape and the "
        'relation between neighbours ("a small red circle left of a large blue square"); three '
        "paraphrased references per image, with the token spans that name each object. Each "
        "object is a COCO instance (category = its shape, RLE mask). Mask classes: background, "
        "circle, square, triangle. VAE labels: the shapes and colours present."
    ),
    "chest": (
        "**Synthetic chest-radiograph phantoms, not clinical data.** 64x64 grey-scale drawings of "
        "lung fields, heart shadow, ribs, spine and soft tissue (PA view: the patient's right on "
        "the viewer's left). 40% normal; the rest carry one or two findings: consolidation in a "
        "zone (the pneumonia case), a nodule in a zone, a pleural effusion on a side, an enlarged "
        "heart. Captions in radiology-report style, three paraphrases per image, with the token "
        "spans that name each finding. COCO instances: lungs, heart, and each finding's region. "
        "Mask classes: background, lung, heart, opacity. VAE labels: consolidation, nodule, "
        "effusion, cardiomegaly, or normal. Nothing learned here transfers to real radiographs."
    ),
}
LIMITS = {
    "shapes": (
        "Trained on generated scenes only: three shapes, five colours, two sizes, at most three "
        "objects in a 3x3 grid. Other images (photos, overlapping objects, other colours) "
        "should be flagged out of domain rather than captioned; the table above says how many of "
        "the non-domain test images are, and metrics.json names any missed (the domain model's "
        "signals were chosen looking at this test set, so a new kind of image may pass: a "
        "smooth greyscale photograph scores closest to the scenes). Relation words "
        '("left of", "above") are not grounded: they name no region, and the sentinel lets the '
        "decoder say so."
    ),
    "chest": (
        "Synthetic phantoms, not radiographs: never use these weights on clinical images or for "
        "any medical decision. The findings are drawn to be visible at 64x64; subtle real "
        "findings, devices, lateral views and other pathologies are not represented, and real "
        "radiographs are expected to be flagged out of domain. Attention is supervised by the "
        "generated regions, so the heat-maps point where the generator drew the finding; on "
        "other data they point where that data's instances taught them to."
    ),
}


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _grounding_rows(ground: dict[str, Any]) -> list[str]:
    rows = [
        "| words | n | pointing game | mass in region | chance | visual (1 - sentinel) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in ground.get("classes", {}).items():
        rows.append(
            f"| {name} | {row['n']} | {_fmt(row['pointing'])} | {_fmt(row['mass'])} | "
            f"{_fmt(row['chance'])} | {_fmt(row['visual'])} |"
        )
    nv = ground.get("non_visual", {})
    if nv.get("n"):
        rows.append(f"| non-visual (no region) | {nv['n']} | - | - | - | {_fmt(nv['visual'])} |")
    return rows


def _ablation_rows(table: dict[str, Any]) -> list[str]:
    rows = [
        "| variant | BLEU-4 | CIDEr | task | nouns: pointing / mass | attributes: pointing "
        "| chance | non-visual words' visual |",
        "| --- " * 8 + "|",
    ]
    for name, r in table.items():
        if not isinstance(r, dict):
            continue
        task = r.get("object_f1", r.get("finding_accuracy"))
        rows.append(
            f"| {name} | {_fmt(r.get('BLEU-4'))} | {_fmt(r.get('CIDEr'))} | {_fmt(task)} | "
            f"{_fmt(r.get('noun_pointing', '-'))} / {_fmt(r.get('noun_mass', '-'))} | "
            f"{_fmt(r.get('attribute_pointing', '-'))} | {_fmt(r.get('noun_chance', '-'))} | "
            f"{_fmt(r.get('non_visual_looking', '-'))} |"
        )
    return rows


def model_card(domain: str, report: dict[str, Any], seconds: dict[str, float], recipe: Any) -> str:
    """The card: data, how to reproduce, models, every measured number beside its baseline."""
    cap, seg, vae = report.get("captioner", {}), report.get("segmenter", {}), report.get("vae", {})
    r = recipe
    lines = [
        f"# S3E models: `{domain}`",
        "",
        "## Data",
        CARD_INTRO[domain],
        "",
        f"Training split: {r.train_n} images (seed {r.train_seed}; the VAE uses its first "
        f"{r.vae_n}, the segmenter its first {r.seg_n}, the ablation and the label study its "
        f"first {r.study_n}); held-out split: "
        f"{r.test_n} images (seed {r.test_seed}), never used in training.",
        "",
        "## Reproduce",
        "```",
        f"s3e-train reproduce --domain {domain} --out models/{domain}",
        "```",
        "On a 2-core CPU: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ".",
        "",
        "## Models",
        f"- captioner: CNN encoder over a {report.get('grid', 8)}x{report.get('grid', 8)} grid of "
        "regions, LSTM decoder with Bahdanau attention and a visual sentinel (Lu et al. 2017), "
        "attention supervised by the instance regions the caption words name (Liu et al. 2017), "
        f"beam search (width {cap.get('beam_width', 3)}). Validation split 10%, early stopping, "
        "best epoch kept.",
        "- embedder (semantic search): the captioner's encoder, frozen, with a projection of "
        "each region and of the whole grid into a 48-d space; a text encoder (word embeddings, "
        "two convolutions over neighbouring words); score = late interaction (FILIP, Yao et al. "
        "2021): each query word's best region, averaged. Contrastive on references and 1-3 word "
        "spans of them, with every image whose references contain the text as a positive; "
        "words tied to instances are taught to peak on them.",
        "- segmenter: small U-Net (nearest up-sampling + convolutions).",
        "- vae: convolutional VAE with a label head q(y|x) and a decoder p(x|z, y) (Kingma et al. "
        "2014, M2), trained on all images with labels from 10% of them (pseudo-labels for the "
        "rest); anomaly = reconstruction error of the image decoded as if it had no finding, "
        "/ its 95th percentile on normal training images, plus the strongest finding's "
        "probability / its threshold when the label head gives one (so every image with a "
        "finding reads above 1, ordered by its residual).",
        "- out of domain (`core/domain.py`, `s3e-train fit domain`): Mahalanobis distance of "
        "six signals (input complexity and roughness, VAE reconstruction error and latent "
        "distance, segmenter entropy, distance of the captioner encoder's mean region feature) "
        "above its 99.5th percentile on the training images.",
        "",
        "## Metrics on the held-out split",
        "| metric | value |",
        "| --- | --- |",
    ]
    for k in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr", "object_f1", "finding_accuracy"):
        if k in cap:
            lines.append(f"| captioner {k} | {_fmt(cap[k])} |")
    for k in ("mIoU", "pixel_accuracy"):
        if k in seg:
            lines.append(f"| segmenter {k} | {_fmt(seg[k])} |")
    for name, iou in seg.get("iou", {}).items():
        lines.append(f"| segmenter IoU {name} | {_fmt(iou)} |")
    for k in ("label_macro_f1", "none_given_to_findings", "anomaly_auroc", "out_of_domain_rate"):
        if k in vae:
            lines.append(f"| vae {k} | {_fmt(vae[k])} |")
    for name, f1 in vae.get("label_f1", {}).items():
        lines.append(f"| vae label F1 {name} | {_fmt(f1)} |")
    ood = vae.get("out_of_domain_test")
    if ood:
        lines.append(f"| vae out-of-domain images flagged | {ood['flagged']} of {ood['images']} |")
    if "grounding" in cap:
        lines += [
            "",
            "## Attention grounding (shipped captioner, held-out split)",
            "A word's attention map points at the region of the thing it names (pointing "
            "game: the peak cell is in the region; mass: the share of attention there); "
            "chance = the region's share of the grid.",
            "",
            *_grounding_rows(cap["grounding"]),
        ]
    emb = report.get("embedder", {})
    if emb:
        lines += [
            "",
            "## Semantic search (text-image model, held-out split, Keras)",
            "Precision@10 of the split's own queries (see `models/queries.py`); chance = "
            "the relevant share.",
            "",
            "| queries | n | precision@10 | chance | worst |",
            "| --- | --- | --- | --- | --- |",
        ]
        for kind in ("words", "typos", "bound"):
            if kind in emb:
                row = emb[kind]
                worst = ", ".join(f"{q} {s:.2f}" for q, s in row["worst"].items())
                lines.append(
                    f"| {kind} | {row['queries']} | {_fmt(row['p_at_10'])} | "
                    f"{_fmt(row['chance'])} | {worst} |"
                )
        pt = emb.get("pointing", {})
        if pt:
            lines.append(
                f"| query-noun pointing | {pt['n']} | {_fmt(pt['pointing'])} | "
                f"{_fmt(pt['chance'])} | |"
            )
    table = report.get("ablation", {})
    if table:
        lines += [
            "",
            f"## Attention ablation ({table.get('split')} for caption scores; all "
            "images for grounding)",
            f"`shipped` is the full recipe; the others train on the first {r.study_n} images.",
            "",
            *_ablation_rows(table),
        ]
    study = report.get("label_study", {})
    if study:
        lines += [
            "",
            f"## VAE labels by the share of labelled images (first {r.study_n} training images)",
            "| labels from | macro-F1 | normal given to findings |",
            "| --- | --- | --- |",
        ]
        for frac, row in study.items():
            lines.append(
                f"| {float(frac):.0%} | {_fmt(row.get('label_macro_f1'))} | "
                f"{_fmt(row.get('none_given_to_findings', '-'))} |"
            )
    lines += ["", "## Minimums", "| check | value | bound | ok |", "| --- | --- | --- | --- |"]
    for k, v in report.get("minimums", {}).items():
        bound = v.get("minimum", v.get("maximum", "-"))
        lines.append(f"| {k} | {_fmt(v.get('value', '-'))} | {_fmt(bound)} | {v['ok']} |")
    lines += ["", "## Limits", LIMITS[domain], ""]
    return "\n".join(lines)
