"""`s3e-train reproduce`: the one command that makes a domain's shipped models from nothing.

Generates the training and held-out splits from fixed seeds; trains the shipped captioner
(Bahdanau attention, supervised by the generated instances, with a visual sentinel), the
text-image model of semantic search over its encoder, the segmenter and the semi-supervised
VAE (labels from 10% of its images); trains the attention ablation (each lever alone, both,
Luong, the mean-context baseline) and the VAE label study (1%, 10%, 100% of labels) on a
smaller prefix of the same training split, so the whole run fits in an hour on 2 cores;
evaluates everything on the held-out split and writes `metrics.json` and `MODEL_CARD.md`
beside the weights.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import training
from models.captioner_training import fit_captioner
from models.data.dataset import write_dataset
from models.domain_training import fit_domain
from models.embedder_training import fit_embedder
from models.model_card import model_card
from models.vae_training import fit_vae

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Sizes, seeds and epoch ceilings for one domain; the held-out seed is never trained on."""

    train_n: int
    test_n: int
    train_seed: int
    test_seed: int
    captioner_epochs: int
    segmenter_epochs: int
    vae_epochs: int
    vae_n: int
    """The VAE trains on this prefix of the training split (its epochs cost more)."""
    study_n: int
    """The ablation captioners and the label study train on this prefix."""
    study_epochs: int
    embedder_epochs: int
    seg_n: int
    """The segmenter trains on this prefix (it learns masks quickly)."""
    layout_cells: int = 16
    layout_hidden: tuple[int, ...] = (96,)
    """The embedder's whole-image head: features per region, hidden widths
    (`EmbedderConfig.layout_*`)."""


RECIPES = {
    "shapes": Recipe(
        6000,
        1000,
        1001,
        2001,
        25,
        4,
        20,
        4000,
        1500,
        12,
        40,
        4000,
        layout_cells=32,
        layout_hidden=(192, 96),
    ),
    "chest": Recipe(6000, 1000, 1002, 2002, 25, 4, 20, 4000, 1500, 12, 40, 4000),
}
ABLATIONS: dict[str, dict[str, Any]] = {
    "bahdanau": {"attention": "bahdanau", "sentinel": False, "grounding_weight": 0.0},
    "bahdanau+sentinel": {"attention": "bahdanau", "sentinel": True, "grounding_weight": 0.0},
    "bahdanau+supervision": {"attention": "bahdanau", "sentinel": False, "grounding_weight": 1.0},
    "bahdanau+both": {"attention": "bahdanau", "sentinel": True, "grounding_weight": 1.0},
    "luong+both": {"attention": "luong", "sentinel": True, "grounding_weight": 1.0},
    "none": {"attention": "none", "sentinel": False, "grounding_weight": 0.0},
}
"""Variant name -> captioner settings: each lever alone, both (the shipped settings), Luong's
attention with both, and the mean-context baseline."""
LABEL_FRACTIONS = (0.01, 0.1, 1.0)
SECONDS_FILE = "train_seconds.json"


def make_data(domain: str, work: Path, resume: bool = False) -> dict[str, Path]:
    """The training split, its prefixes for the VAE and the studies, and the held-out split.

    With `resume`, a split already written with the same size and seed is kept (splits are
    written whole and renamed into place, so one that exists is complete)."""
    r = RECIPES[domain]
    base = Path(work) / domain
    plan = {
        "train": (r.train_n, r.train_seed),
        "vae": (r.vae_n, r.train_seed),
        "segmenter": (r.seg_n, r.train_seed),
        "study": (r.study_n, r.train_seed),
        "test": (r.test_n, r.test_seed),
    }
    out = {}
    for name, (n, seed) in plan.items():
        folder = base / name
        if resume and _same_split(folder, n, seed):
            out[name] = folder
            continue
        if folder.exists():
            shutil.rmtree(folder)
        out[name] = write_dataset(domain, n, seed, folder)
    return out


def _same_split(folder: Path, n: int, seed: int) -> bool:
    meta = folder / "meta.json"
    if not meta.exists():
        return False
    info = json.loads(meta.read_text())
    return bool(info.get("n") == n and info.get("seed") == seed)


def fit_all(
    domain: str, data: dict[str, Path], out: Path, resume: bool = False
) -> dict[str, float]:
    """Train every model of `domain` into `out`; returns seconds per model.

    Seconds are saved after each model, so a `resume`d run skips every model whose history
    file (written last, after its best weights) exists and still reports what each one cost."""
    r = RECIPES[domain]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ledger = out / SECONDS_FILE
    seconds: dict[str, float] = json.loads(ledger.read_text()) if resume and ledger.exists() else {}

    def timed(name: str, fn: Any, split: Path, folder: Path, **kwargs: Any) -> None:
        model = fn.__name__.removeprefix("fit_")
        if resume and name in seconds and (Path(folder) / f"history_{model}.json").exists():
            log.info("kept %s from the interrupted run", name)
            return
        start = time.monotonic()
        fn(split, folder, **kwargs)
        seconds[name] = round(time.monotonic() - start, 1)
        ledger.write_text(json.dumps(seconds, indent=1) + "\n")
        log.info("trained %s in %.0f s", name, seconds[name])

    timed("segmenter", training.fit_segmenter, data["segmenter"], out, epochs=r.segmenter_epochs)
    timed("vae", fit_vae, data["vae"], out, epochs=r.vae_epochs, label_fraction=0.1)
    timed(
        "captioner",
        fit_captioner,
        data["train"],
        out,
        epochs=r.captioner_epochs,
        **ABLATIONS["bahdanau+both"],
    )
    timed(
        "embedder",
        fit_embedder,
        data["train"],
        out,
        epochs=r.embedder_epochs,
        layout_cells=r.layout_cells,
        layout_hidden=list(r.layout_hidden),
    )
    timed("domain", fit_domain, data["train"], out)
    for name, settings in ABLATIONS.items():
        timed(
            f"ablation/{name}",
            fit_captioner,
            data["study"],
            out / "ablation" / name,
            epochs=r.study_epochs,
            **settings,
        )
    for fraction in LABEL_FRACTIONS:
        timed(
            f"label_study/{fraction:g}",
            fit_vae,
            data["study"],
            label_dir(out, fraction),
            epochs=r.study_epochs,
            label_fraction=fraction,
        )
    return seconds


def label_dir(out: Path, fraction: float) -> Path:
    return Path(out) / "label_study" / f"{round(fraction * 100)}pct"


def run(domain: str, out: Path, work: Path, resume: bool = False) -> dict[str, Any]:
    """Data, training, evaluation and model card for `domain`: the documented reproduction.

    `resume` carries on an interrupted run: kept splits, skipped finished models."""
    from models.evaluate import evaluate, label_study

    start = time.monotonic()
    data = make_data(domain, work, resume)
    seconds = fit_all(domain, data, out, resume)
    report = evaluate(out, data["test"])
    report["label_study"] = label_study(
        {f"{f:g}": label_dir(out, f) for f in LABEL_FRACTIONS}, data["test"]
    )
    seconds["total"] = round(sum(seconds.values()), 1)
    seconds["wall"] = round(time.monotonic() - start, 1)
    (Path(out) / "metrics.json").write_text(
        json.dumps({**report, "train_seconds": seconds}, indent=1) + "\n"
    )
    (Path(out) / "MODEL_CARD.md").write_text(model_card(domain, report, seconds, RECIPES[domain]))
    return report
