"""`s3e-train photos`: the photos domain's models folder, made from registry files alone.

Nothing is trained: the classifier is torchvision's ImageNet MobileNetV2 (the `mobilenet_v2`
asset), and its classes are read as words through WordNet (`models.photos.words`); people
are found by MediaPipe's face detector (the `mediapipe_faces` asset), carried as published.
The folder gets `config.json`, `words.json` and `related.json` (`models.photos.related`); the work
folder gets crops of the registry photographs to calibrate and check the int8 conversion
(`models.photos.data`). `s3e-convert` then makes the bundle, fetching the backbone's weights
itself:

    s3e-train photos --out models/photos --work var/data
    s3e-convert --models models/photos --precision int8 --out models/bundles/photos-int8 \\
        --calibration var/data/photos-calibration --eval-data var/data/photos-held-out
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from models.config import ClassifierConfig, FacesConfig, ImageConfig, ModelsConfig
from models.photos import related, words
from models.photos.data import write_photo_set

log = logging.getLogger(__name__)
SIZE = 224
CALIBRATION = ("photos-calibration", 96, 5005)
HELD_OUT = ("photos-held-out", 48, 6006)
"""(folder, images, seed) of the crops for s3e-convert's calibration and faithfulness."""


def make(out: Path, work: Path, cache: Path | None = None) -> ModelsConfig:
    """Write the models folder `out` and the crops under `work` (made anew)."""
    cfg = ModelsConfig(
        domain="photos",
        image=ImageConfig(size=SIZE, channels=3),
        classifier=ClassifierConfig(),
        faces=FacesConfig(),
    )
    assert cfg.classifier is not None
    classes = words.build(cache)
    out.mkdir(parents=True, exist_ok=True)
    words.write(classes, out / cfg.classifier.words_file)
    table = related.build_from_assets(words.to_json(classes), cache)
    related.write(table, out / cfg.classifier.related_file)
    cfg.save(out)
    for folder, n, seed in (CALIBRATION, HELD_OUT):
        shutil.rmtree(work / folder, ignore_errors=True)
        write_photo_set(work / folder, n, seed, SIZE, cache)
    log.info(
        "photos: %d classes' words and %d related words in %s; crops in %s",
        len(classes),
        len(table),
        out,
        work,
    )
    return cfg
