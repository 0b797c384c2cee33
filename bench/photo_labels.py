"""Labels and heat-maps of a photos bundle on real photographs from the registries.

    python bench/photo_labels.py --json bench/results/photo-labels.json

Each photograph (the assets named in PHOTOS, fetched by `s3e-train assets`) goes through the
device pipeline (`edge.ingest.imaging.preprocess`, the bundle's TFLite classifier, the
`classify` output). A photograph counts as labelled right when one of the words a person would
search it by (written here by hand, before looking at any output) is among its first three
labels or their other words. Chance: three labels drawn at random from the bundle's labels
holding one of those words. Where a photograph has a hand-marked box (imgaug's quokka), the
pointing game asks whether its first label's heat-map peaks inside the box.

Four of these photographs also calibrated the int8 conversion (`models.photos.data`); none
trained anything. They are few: the figures describe this bundle, not photographs at large.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.analysis.bundle import load_bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.classify import ClassifyOutput
from edge.ingest.imaging import preprocess
from models.pretrained.assets import fetch

PHOTOS: dict[tuple[str, str], tuple[str, ...]] = {
    ("skimage_photos", "chelsea.png"): ("cat",),
    ("skimage_photos", "coffee.png"): ("coffee",),
    ("skimage_photos", "rocket.jpg"): ("rocket",),
    ("skimage_photos", "astronaut.png"): ("person",),
    ("skimage_photos", "motorcycle_left.png"): ("motorcycle",),
    ("sklearn_photos", "china.jpg"): ("temple",),
    ("sklearn_photos", "flower.jpg"): ("flower",),
    ("matplotlib_photos", "grace_hopper.jpg"): ("person",),
    ("imgaug_photos", "quokka.jpg"): ("animal",),
}
"""(asset, photograph) -> the word a person would search it by, written before any output of
the bundle was seen."""
BOXES = {("imgaug_photos", "quokka.jpg"): "quokka_annotations.json"}


def names(label: Any) -> set[str]:
    return {label.word, *label.also}


def peak_in_box(maps: np.ndarray, k: int, box: dict[str, float], size: tuple[int, int]) -> bool:
    """Whether label k's map peaks inside the box (the map covers the whole image)."""
    g = maps.shape[-1]
    r, c = np.unravel_index(int(np.argmax(maps[k])), (g, g))
    x, y = (c + 0.5) * size[0] / g, (r + 0.5) * size[1] / g
    return bool(box["x1"] <= x <= box["x2"] and box["y1"] <= y <= box["y2"])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", default="photos-int8")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    bundle = load_bundle(args.bundle)
    models, out = BundleModels(bundle, threads=2), ClassifyOutput(bundle)
    labels_n = len(out.vocab.labels)
    rows, pointing = [], []
    for (asset, name), words in PHOTOS.items():
        files = fetch(asset)
        with Image.open(files[name]) as f:
            im = f.convert("RGB")
        made = out.run(models.runners, preprocess(im, bundle.doc.preprocessing.model_dump()))
        top = made.fields.labels[:3]
        right = any(set(words) & names(w) for w in top)
        holding = sum(
            bool(set(words) & {lab, *out.vocab.synonyms[lab]}) for lab in out.vocab.labels
        )
        chance = 1 - np.prod([(labels_n - holding - i) / (labels_n - i) for i in range(3)])
        row = {
            "photo": f"{asset}/{name}",
            "searched_by": list(words),
            "labels": [w.word for w in made.fields.labels],
            "classes": [(c.name, c.p) for c in made.fields.classes[:3]],
            "right_in_top3": right,
            "chance": round(float(chance), 5),
        }
        if (asset, name) in BOXES and top:
            box = json.loads(files[BOXES[(asset, name)]].read_text())["bounding_boxes"][0]
            g = made.fields.grid
            maps = np.frombuffer(made.blobs["label_maps"], np.uint8).reshape(-1, g, g)
            row["pointing"] = peak_in_box(maps, 0, box, im.size)
            pointing.append(row["pointing"])
        rows.append(row)
        print(f"{'OK' if right else '--'} {asset}/{name}: {row['labels']} (want {words})")
    result = {
        "bundle": bundle.doc.name,
        "photographs": len(rows),
        "right_in_top3": sum(r["right_in_top3"] for r in rows),
        "share_right": round(sum(r["right_in_top3"] for r in rows) / len(rows), 3),
        "chance": round(float(np.mean([r["chance"] for r in rows])), 5),
        "pointing_game": {"boxes": len(pointing), "hits": sum(pointing)},
        "rows": rows,
    }
    print(
        f"right in the top 3: {result['right_in_top3']} of {len(rows)} (chance {result['chance']})"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
