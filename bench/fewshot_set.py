"""The few-shot photo set of `bench/photo_fewshot.py`, made from two Debian packages.

    python bench/fewshot_set.py --out var/fewshot
    python bench/photo_fewshot.py --train var/fewshot/train --test var/fewshot/test \\
        --others var/fewshot/others --json bench/results/photo-fewshot.json

Real photographs in five classes, from Tux Paint's stamps (`tuxpaint-stamps-default`, GPL-2:
photographs cut out on a transparent background) and GCompris's activities
(`gcompris-qt-data`: whole scenes, public domain, CC0 or CC BY-SA, read out of its Qt resource
files): mammals, birds, fish, tools, landmarks; and, as photographs of none of them, Tux
Paint's plants and GCompris's renewable-energy pictures. `bench/fewshot_files.json` names
each file (`tp:` a path in the Tux Paint package, `gc:` a resource file and the picture's
path in it); they were picked by their colours (a photograph has thousands) and looked at.
Each .deb is fetched with `apt-get download` at its pinned version and checked against its
sha256; a picture whose bytes repeat another is kept once. The first TRAIN of each class, in
a shuffle seeded by SEED, go to `train/`, the rest to `test/`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from photo_set import rcc_file

from edge.analysis.bundle import sha256_file

PACKAGES = {
    "tp": (
        "tuxpaint-stamps-default=2022.06.04-1",
        "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
    ),
    "gc": (
        "gcompris-qt-data=3.1-2",
        "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f",
    ),
}
RCC = "usr/share/gcompris-qt/rcc"
FILES = Path(__file__).resolve().parent / "fewshot_files.json"
CLASSES = ("mammals", "birds", "fish", "tools", "landmarks")
OTHERS = ("plants", "renewable_energy")
TRAIN, SEED = 20, 2026


def unpacked(key: str, cache: Path) -> Path:
    """The package's files, extracted once into the cache from its checked .deb."""
    spec, sha = PACKAGES[key]
    root = cache / key
    if (root / ".done").exists():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", spec], cwd=tmp, check=True)
        deb = next(Path(tmp).glob("*.deb"))
        if sha256_file(deb) != sha:
            sys.exit(f"{deb.name}: not the package pinned (sha256 {sha[:12]}...)")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    (root / ".done").touch()
    return root


def picture(ref: str, roots: dict[str, Path]) -> bytes:
    """A file's bytes by its reference in FILES."""
    key, _, rest = ref.partition(":")
    if key == "tp":
        return (roots["tp"] / rest).read_bytes()
    rcc, _, resource = rest.partition(":")
    return rcc_file((roots["gc"] / RCC / rcc).read_bytes(), ":" + resource)


def write(out: Path, cache: Path) -> dict[str, dict[str, int]]:
    refs = json.loads(FILES.read_text())
    roots = {key: unpacked(key, cache) for key in PACKAGES}
    rng = random.Random(SEED)
    counts: dict[str, dict[str, int]] = {}
    for cls in (*CLASSES, *OTHERS):
        kept: dict[str, tuple[str, bytes]] = {}
        for ref in refs[cls]:
            data = picture(ref, roots)
            kept.setdefault(hashlib.sha256(data).hexdigest(), (ref, data))
        items = sorted(kept.values())
        rng.shuffle(items)
        parts = (
            {"others": items} if cls in OTHERS else {"train": items[:TRAIN], "test": items[TRAIN:]}
        )
        for split, part in parts.items():
            folder = out / split / (cls if split != "others" else "")
            folder.mkdir(parents=True, exist_ok=True)
            for k, (ref, data) in enumerate(part):
                name = Path(ref.rpartition("/")[2])
                (folder / f"{cls}_{k:03d}{name.suffix}").write_bytes(data)
            counts.setdefault(cls, {})[split] = len(part)
    return counts


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="a folder that does not exist")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache/s3e/fewshot-debs")
    args = p.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists: give a new folder")
    print(json.dumps(write(args.out, args.cache)))


if __name__ == "__main__":
    main()
