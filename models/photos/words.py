"""The words a person searches photos by, for each of the ImageNet-1k classes.

A classifier names a photo "tabby", yet people search for "cat" or "animal". Each class gets
its own WordNet lemmas and the words of the useful ancestors in its WordNet hypernym closure:
tabby -> cat -> pet -> animal, espresso -> coffee -> beverage. Most ancestors are taxonomy
nobody types ("placental", "instrumentality"), so only a curated set of everyday ones counts,
each with the word people use for it. The classes come in torchvision's index order (the
sorted wnids) from timm's data files, the hypernyms from WordNet 3.0's `data.noun`; both are
fetched into the asset cache (`models.pretrained.assets`), never committed.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.pretrained.assets import fetch

HYPERNYMS = frozenset({"@", "@i"})
"""pointer symbols to a hypernym: a class (`@`) or, for an instance, its class (`@i`)"""
MARKER = re.compile(r"\((?:a|p|ip)\)$")

USEFUL: dict[str, tuple[str, ...]] = {
    # Animals. "pet" stands for WordNet's domestic animal: its classes are the dogs and cats.
    "n00015388": ("animal",),
    "n01317541": ("pet",),  # domestic animal, domesticated animal
    "n02084071": ("dog",),  # dog, domestic dog, Canis familiaris
    "n02121620": ("cat",),  # cat, true cat (house cats and wildcats)
    "n02127808": ("big cat",),  # big cat, cat (lion, tiger, leopard...)
    "n02114100": ("wolf",),
    "n02118333": ("fox",),
    "n02131653": ("bear",),
    "n02484322": ("monkey",),
    "n02470325": ("ape",),
    "n02503517": ("elephant",),
    "n02062744": ("whale",),
    "n02329401": ("rodent",),
    "n02324045": ("rabbit",),
    "n02395003": ("pig",),  # swine
    "n02419796": ("antelope",),
    "n01503061": ("bird",),
    "n01816887": ("parrot",),
    "n01846331": ("duck",),
    "n02512053": ("fish",),
    "n01482330": ("shark",),
    "n01661091": ("reptile",),
    "n01726692": ("snake",),  # snake, serpent, ophidian
    "n01674464": ("lizard",),
    "n01662784": ("turtle",),
    "n01627424": ("amphibian",),
    "n01639765": ("frog",),  # frog, toad, toad frog, anuran
    "n02159955": ("insect",),
    "n02164464": ("beetle",),
    "n02274259": ("butterfly",),
    "n01772222": ("spider",),
    "n02402425": ("cow", "cattle"),  # cattle, cows, kine, oxen (the ox class)
    "n02411705": ("sheep",),
    "n02374451": ("horse",),
    "n02437136": ("camel",),
    "n02496913": ("lemur",),
    "n01877134": ("kangaroo",),
    "n02355227": ("squirrel",),
    "n02076196": ("seal",),
    "n01621127": ("owl",),
    "n01613294": ("eagle",),
    "n02055803": ("penguin",),
    "n01697178": ("crocodile",),
    "n01699831": ("dinosaur",),
    "n01976957": ("crab",),
    "n01982650": ("lobster",),
    # Plants, food and drink. Food is WordNet's solid food, nutriment and foodstuff, not
    # their parent "food, nutrient": that would make every beverage food too.
    "n00017222": ("plant",),  # plant, flora, plant life
    "n11669921": ("flower",),
    "n12992868": ("mushroom", "fungus"),  # fungus (earthstar, bolete, agaric...)
    "n07555863": ("food",),  # food, solid food
    "n07570720": ("food",),  # nutriment, nourishment (dishes, courses)
    "n07705931": ("fruit",),  # edible fruit (a botanical fruit includes acorns and buckeyes)
    "n07742704": ("berry",),
    "n07707451": ("vegetable",),
    "n07566340": ("food",),  # foodstuff, food product (sauces, dips, dough)
    "n07679356": ("bread",),
    "n07695965": ("sandwich",),
    "n07609840": ("dessert",),
    "n07881800": ("beverage", "drink"),
    "n07929519": ("coffee",),  # coffee, java (the drink)
    # Vehicles.
    "n04524313": ("vehicle",),
    "n02958343": ("car",),  # car, auto, automobile, machine, motorcar
    "n04490091": ("truck",),
    "n02924116": ("bus",),
    "n02834778": ("bicycle", "bike"),
    "n03790512": ("motorcycle",),
    "n03684823": ("locomotive", "train"),
    "n02959942": ("train",),  # car, railcar, railway car (a car of a train)
    "n04468005": ("train",),
    "n04530566": ("boat",),  # vessel, watercraft
    "n04194289": ("ship",),
    "n02686568": ("aircraft",),
    "n02691156": ("airplane", "plane"),
    "n04264914": ("spacecraft",),
    # Things.
    "n00007846": ("person", "people"),
    "n02913152": ("building",),
    "n02898711": ("bridge",),
    "n04202417": ("shop", "store"),
    "n03327234": ("fence",),
    "n03743902": ("monument",),  # memorial, monument
    "n03405725": ("furniture",),
    "n03001627": ("chair",),
    "n04379243": ("table",),
    "n03051540": ("clothing", "clothes"),
    "n03497657": ("hat",),
    "n04272054": ("glasses",),  # spectacles, specs, eyeglasses, glasses
    "n03380867": ("shoe", "footwear"),  # footwear, footgear (boots, clogs, sandals...)
    "n03800933": ("musical instrument", "instrument"),
    "n04451818": ("tool",),
    "n04565375": ("weapon",),
    "n03467984": ("gun",),
    "n02778669": ("ball",),
    "n03964744": ("toy",),  # plaything, toy
    "n04285146": ("sports equipment",),
    "n03082979": ("computer",),
    "n04401088": ("phone", "telephone"),
    "n02942699": ("camera",),
    "n03278248": ("electronics",),  # electronic equipment
    "n02729837": ("appliance",),
    "n03621049": ("kitchen utensil",),
    "n03147509": ("cup",),
    "n02876657": ("bottle",),
    "n02773037": ("bag",),
    "n02883344": ("box",),
    "n03046257": ("clock",),
    "n03636248": ("lamp",),
    # Places.
    "n09287968": ("landscape",),  # geological formation (cliff, valley, volcano, seashore...)
    "n09359803": ("mountain",),
    "n09433442": ("shore",),
}
"""Everyday ancestors by wnid -> the words a class under them gets, the commonest first."""

REPARENT: dict[str, tuple[str, ...]] = {
    "n07930864": ("n03147509",),  # ImageNet's "cup" shows drinking cups, not a punch (a drink)
}
"""Classes whose WordNet synset is not what ImageNet's images show -> the hypernyms they do."""


@dataclass(frozen=True)
class Synset:
    """A WordNet noun synset: its lemmas as WordNet spells them, and its hypernyms' wnids."""

    wnid: str
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]


@dataclass(frozen=True)
class PhotoClass:
    """An ImageNet class: its index, its wnid, the name shown for it (its first lemma, as
    WordNet spells it) and the lowercase words it is found by: its own lemmas, then its
    useful ancestors' words, nearest ancestor first."""

    index: int
    wnid: str
    name: str
    words: tuple[str, ...]


def parse_line(line: str) -> Synset:
    """One `data.noun` line: `offset lex_filenum ss_type w_cnt word lex_id... p_cnt
    [symbol offset pos source/target]... | gloss` (w_cnt in hex, p_cnt in decimal)."""
    fields = line.split(" | ", 1)[0].split()
    count = int(fields[3], 16)
    lemmas = tuple(_lemma(fields[4 + 2 * i]) for i in range(count))
    at = 4 + 2 * count
    pointers = [fields[at + 1 + 4 * i : at + 5 + 4 * i] for i in range(int(fields[at]))]
    hypernyms = tuple("n" + off for sym, off, pos, _ in pointers if sym in HYPERNYMS and pos == "n")
    return Synset("n" + fields[0], lemmas, hypernyms)


def _lemma(word: str) -> str:
    return MARKER.sub("", word).replace("_", " ")


def read_synsets(data_noun: Path) -> dict[str, Synset]:
    """Every synset of a `data.noun` by wnid; the licence header's lines start with spaces."""
    with data_noun.open(encoding="utf-8") as f:
        synsets = (parse_line(line) for line in f if line.strip() and not line.startswith(" "))
        return {s.wnid: s for s in synsets}


def read_senses(index_noun: Path) -> dict[str, list[str]]:
    """Each lowercase word (spaces for WordNet's underscores) -> its synsets' wnids, commonest
    sense first: an `index.noun` line is `lemma pos synset_cnt p_cnt [ptr_symbol]... sense_cnt
    tagsense_cnt synset_offset...`."""
    out: dict[str, list[str]] = {}
    with index_noun.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith(" "):
                continue
            fields = line.split()
            count = int(fields[2])
            out[fields[0].replace("_", " ")] = ["n" + off for off in fields[-count:]]
    return out


def read_classes(synsets_txt: Path, lemmas_txt: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The classes in index order as (wnid, lemmas): one wnid a line in `synsets_txt`, and
    `wnid<TAB>lemma, lemma...` lines (for many more wnids) in `lemmas_txt`."""
    wnids = synsets_txt.read_text(encoding="utf-8").split()
    lemmas = {}
    for line in lemmas_txt.read_text(encoding="utf-8").splitlines():
        wnid, _, text = line.partition("\t")
        lemmas[wnid] = tuple(w.strip() for w in text.split(", "))
    missing = [w for w in wnids if w not in lemmas]
    if missing:
        raise ValueError(f"{lemmas_txt}: no lemmas for {', '.join(missing[:5])}")
    return [(w, lemmas[w]) for w in wnids]


def ancestors(wnid: str, synsets: Mapping[str, Synset]) -> list[str]:
    """The wnid's hypernym closure, nearest first (breadth first), each ancestor once."""
    seen: list[str] = []
    queue = deque(REPARENT.get(wnid, synsets[wnid].hypernyms))
    while queue:
        up = queue.popleft()
        if up not in seen:
            seen.append(up)
            queue.extend(synsets[up].hypernyms)
    return seen


def class_words(
    wnid: str,
    lemmas: Sequence[str],
    synsets: Mapping[str, Synset],
    useful: Mapping[str, tuple[str, ...]] = USEFUL,
) -> tuple[str, ...]:
    """The class's lemmas, then its useful ancestors' words, lowercase and each once."""
    found = [w for up in ancestors(wnid, synsets) for w in useful.get(up, ())]
    return tuple(dict.fromkeys(w.lower() for w in (*lemmas, *found)))


def build_from(
    synsets_txt: Path,
    lemmas_txt: Path,
    data_noun: Path,
    useful: Mapping[str, tuple[str, ...]] = USEFUL,
) -> list[PhotoClass]:
    """The classes from the files themselves (`build` fetches them)."""
    return classes_from(read_classes(synsets_txt, lemmas_txt), read_synsets(data_noun), useful)


def classes_from(
    classes: list[tuple[str, tuple[str, ...]]],
    synsets: Mapping[str, Synset],
    useful: Mapping[str, tuple[str, ...]] = USEFUL,
) -> list[PhotoClass]:
    """The classes ((wnid, lemmas) in index order) with their words."""
    return [
        PhotoClass(i, wnid, lemmas[0], class_words(wnid, lemmas, synsets, useful))
        for i, (wnid, lemmas) in enumerate(classes)
    ]


def check_wnids(synsets: Mapping[str, Synset], useful: Iterable[str] = USEFUL) -> None:
    """Refuses curated wnids WordNet lacks: a mistyped one would match no class, silently."""
    reparented = (w for ups in REPARENT.values() for w in ups)
    unknown = sorted({*useful, *reparented} - set(synsets))
    if unknown:
        raise ValueError(f"WordNet has no synset {', '.join(unknown)} (a useful ancestor)")


def build(cache: Path | None = None) -> list[PhotoClass]:
    """The 1000 classes with their words, from the assets (fetched once into the cache)."""
    classes = fetch("imagenet_classes", cache)
    synsets = read_synsets(fetch("wordnet", cache)["data.noun"])
    check_wnids(synsets)
    return classes_from(
        read_classes(classes["imagenet_synsets.txt"], classes["imagenet_synset_to_lemma.txt"]),
        synsets,
    )


def to_json(classes: Iterable[PhotoClass]) -> dict[str, object]:
    """What the device reads: the classes in index order, and each word's class indices."""
    classes = list(classes)
    index: dict[str, list[int]] = {}
    for c in classes:
        for word in c.words:
            index.setdefault(word, []).append(c.index)
    return {
        "classes": [{"wnid": c.wnid, "name": c.name} for c in classes],
        "words": {w: sorted(index[w]) for w in sorted(index)},
    }


def write(classes: Iterable[PhotoClass], path: Path) -> Path:
    """The classes' JSON, compact (one line, no spaces), at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.dumps(to_json(classes), ensure_ascii=False, separators=(",", ":"))
    path.write_text(doc + "\n", encoding="utf-8")
    return path
