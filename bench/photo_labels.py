"""Labels and heat-maps of a photos bundle on the hand-labelled real photographs of
`bench/photo_set.py`, with the bundle run directly (no daemon).

    S3E_ASSETS=/tmp/s3e-assets .venv/bin/python bench/photo_labels.py \\
        --json bench/results/photo-labels.json

Each photograph goes through the device pipeline (`edge.ingest.imaging.preprocess`, the
bundle's TFLite classifier, the `classify` output). A photograph counts as labelled right when
one of the words a person would search it by (written by hand, before looking at any output)
is the word, or one of the other words, of one of its first three labels. Chance: three
labels drawn at random from the bundle's labels holding one of those words. Where a
photograph has a hand-marked box, the pointing game asks whether the heat-map of the label
its first one-word hand word names peaks inside the box (no such label: a miss). Figures are
given overall, for the "dev" and "test" photographs, and for colour and grayscale apart.
`bench/photo_search.py` measures the same through a real daemon, over HTTP.

Four of the scikit-image photographs also calibrated the int8 conversion
(`models.photos.data`); none trained anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from photo_set import (
    PHOTOS,
    Photo,
    by_split,
    label_names,
    peak_in_box,
    photo_box,
    photo_image,
    point_word,
    right_in_top3,
)

from edge.analysis.bundle import Bundle, load_bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.classify import ClassifyFields, ClassifyOutput
from edge.ingest.imaging import preprocess


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", default="photos-int8")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    bundle = load_bundle(args.bundle)
    models, out = BundleModels(bundle, threads=2), ClassifyOutput(bundle)
    rows, pointing = [], []
    for ph in PHOTOS:
        row, point = photo_row(ph, bundle, models, out)
        rows.append(row)
        if point is not None:
            pointing.append(point)
        ok = "OK" if row["right_in_top3"] else "--"
        print(f"{ok} {ph.id} ({ph.split}): {row['labels']} (want {ph.words})")
    result: dict[str, Any] = {
        "bundle": bundle.doc.name,
        "photographs": len(rows),
        "right_in_top3": by_split(rows, "right_in_top3"),
        "chance": round(float(np.mean([r["chance"] for r in rows])), 5),
        "pointing_game": by_split(pointing, "hit"),
        "rows": rows,
    }
    for part, v in result["right_in_top3"].items():
        print(f"right in the top 3, {part}: {v['hits']} of {v['n']} = {v['share']}")
    print(f"chance: {result['chance']}")
    for part, v in result["pointing_game"].items():
        print(f"pointing game, {part}: {v['hits']} of {v['n']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


def photo_row(
    ph: Photo, bundle: Bundle, models: BundleModels, out: ClassifyOutput
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The photograph's labels, whether one is right and the chance of that, and, where it
    has a box, its pointing-game row (the label row with the word asked and the hit)."""
    _, _, im = photo_image(ph)
    rgb = im.convert("RGB")
    made = out.run(models.runners, preprocess(rgb, bundle.doc.preprocessing.model_dump()))
    fields = ClassifyFields.model_validate(made.fields.model_dump())
    labels = [w.model_dump() for w in fields.labels]
    vocab = out.vocab.labels
    holding = sum(bool(set(ph.words) & {lab, *out.vocab.synonyms[lab]}) for lab in vocab)
    chance = 1 - np.prod([(len(vocab) - holding - i) / (len(vocab) - i) for i in range(3)])
    row = {
        **ph.tags,
        "searched_by": list(ph.words),
        "labels": [w["word"] for w in labels],
        "classes": [(c.name, c.p) for c in fields.classes[:3]],
        "right_in_top3": right_in_top3(labels, ph.words),
        "chance": round(float(chance), 5),
    }
    box = photo_box(ph)
    if box is None:
        return row, None
    word = point_word(ph)
    k = next((i for i, lab in enumerate(labels) if word in label_names(lab)), -1)
    g = fields.grid
    maps = np.frombuffer(made.blobs["label_maps"], np.uint8).reshape(-1, g * g)
    hit = k >= 0 and peak_in_box(list(maps[k].astype(float)), g, box, rgb.size)
    point = {**row, "word": word, "has_map": k >= 0, "hit": hit}
    row["pointing"] = hit
    return row, point


if __name__ == "__main__":
    main()
