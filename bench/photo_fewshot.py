"""Labels of your own from few photographs: the photos bundle's head (`s3e-train fit-photos`)
against a network of the same task trained from scratch, on the same photographs.

    python bench/photo_fewshot.py --train DATA/train --test DATA/test \\
        --json bench/results/photo-fewshot.json

`--train` and `--test` are folders of class sub-folders (the same classes). The head is fitted
as `s3e-train fit-photos` fits it and read back as the device reads it (`UserHead`, on the
bundle's TFLite classifier's logits); a test photograph counts right when its likeliest class
is its own, and "labelled" when the device labels it with that class first (`UserHead.taken`:
probable enough and within the class's reach). The from-scratch network (four conv blocks,
96x96 input, mirrored and shifted copies as augmentation, Adam, `--epochs`) sees the same
training photographs; it needs TensorFlow (the `train` extra). Chance is the largest class's
share of the test photographs.
`--others`: a folder of photographs of none of the classes; the share the head labels with
one of them (it should give them none).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.analysis.bundle import load_bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.classify import UserHead
from models.photos.head import class_folders, logits_of, train

SCRATCH_SIZE = 96


class Device:
    """The base bundle's classifier, as the device runs it, and the head fitted on it."""

    def __init__(self, train_dir: Path, base: str) -> None:
        t = time.perf_counter()
        doc, self.used = train(train_dir, base)
        self.fit_seconds = time.perf_counter() - t
        self.head, self.bundle = UserHead(doc), load_bundle(base)
        self.models = BundleModels(self.bundle, threads=2)

    def logits(self, paths: list[Path]) -> list[np.ndarray]:
        """Each photograph's logits as taken (not mirrored)."""
        return [pair[0].astype(np.float64) for pair in logits_of(self.bundle, self.models, paths)]


def pretrained(device: Device, test: dict[str, list[Path]]) -> dict[str, Any]:
    head = device.head
    right = labelled = n = 0
    for k, name in enumerate(head.classes):
        for x in device.logits(test[name]):
            right += int(np.argmax(head.probabilities(x)) == k)
            labelled += int(head.taken(x)[:1] == [k])
            n += 1
    return {
        "accuracy": round(right / n, 3),
        "labelled_right": round(labelled / n, 3),
        "fit_seconds": round(device.fit_seconds, 1),
        "train_images": device.used,
    }


def strangers(device: Device, others: Path) -> dict[str, Any]:
    """How many photographs of none of the classes the device would label with one."""
    paths = sorted(p for p in others.rglob("*") if p.is_file() and not p.name.startswith("."))
    given = [bool(device.head.taken(x)) for x in device.logits(paths)]
    return {"photographs": len(given), "given_a_class": round(float(np.mean(given)), 3)}


def pixels(paths: list[Path]) -> np.ndarray:
    size = (SCRATCH_SIZE, SCRATCH_SIZE)
    return np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize(size), np.float32) / 255 for p in paths]
    )


def scratch(
    train: dict[str, list[Path]], test: dict[str, list[Path]], epochs: int, seed: int
) -> dict[str, Any]:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    classes = list(train)
    x = pixels([p for c in classes for p in train[c]])
    y = np.array([k for k, c in enumerate(classes) for _ in train[c]])
    xt = pixels([p for c in classes for p in test[c]])
    yt = np.array([k for k, c in enumerate(classes) for _ in test[c]])
    layers = [
        tf.keras.layers.RandomFlip("horizontal"),
        tf.keras.layers.RandomTranslation(0.1, 0.1),
    ]
    for width in (32, 64, 128, 128):
        layers += [
            tf.keras.layers.Conv2D(width, 3, padding="same", use_bias=False),
            tf.keras.layers.BatchNormalization(),
            tf.keras.layers.ReLU(),
            tf.keras.layers.MaxPool2D(),
        ]
    layers += [
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dropout(0.3),
        tf.keras.layers.Dense(len(classes)),
    ]
    model = tf.keras.Sequential([tf.keras.Input((SCRATCH_SIZE, SCRATCH_SIZE, 3)), *layers])
    model.compile(
        tf.keras.optimizers.Adam(1e-3),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    t = time.perf_counter()
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=True)
    fit_s = time.perf_counter() - t
    accuracy = float(np.mean(np.argmax(model.predict(xt, verbose=0), axis=1) == yt))
    return {"accuracy": round(accuracy, 3), "fit_seconds": round(fit_s, 1), "epochs": epochs}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--base", default="photos-int8")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--others", type=Path, help="photographs of none of the classes")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    train_set, test_set = class_folders(args.train), class_folders(args.test)
    if list(train_set) != list(test_set):
        sys.exit(f"the classes differ: {list(train_set)} against {list(test_set)}")
    counts = {c: len(ps) for c, ps in test_set.items()}
    device = Device(args.train, args.base)
    result = {
        "classes": list(train_set),
        "train_per_class": {c: len(ps) for c, ps in train_set.items()},
        "test_per_class": counts,
        "chance": round(max(counts.values()) / sum(counts.values()), 3),
        "pretrained_head": pretrained(device, test_set),
        "others": strangers(device, args.others) if args.others else None,
        "from_scratch": [scratch(train_set, test_set, args.epochs, s) for s in args.seeds],
    }
    print(json.dumps(result, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
