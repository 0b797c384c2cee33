"""One device, two domains: how many images a daemon running chest-int8 with photos-int8 as
its catch-all sends to the wrong bundle.

    python bench/routing.py --json bench/results/routing.json

Fresh chest renders (a seed no model saw) and the 77 registry photographs of
`bench/photo_set.py` go into one daemon's folder together; each record then says which bundle
analysed it. A radiograph is misrouted when the photos bundle analysed it (the chest bundle
called it out of its domain), a photograph when the chest bundle kept it. The renders are
what the chest bundle was trained on, drawn anew: real radiographs are not among them, and
the chest bundle would send those to photos today (its model card says why).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from photo_search import drop_and_wait, start_daemon
from photo_set import PHOTOS, photo_image

from models.data.dataset import write_dataset

FRESH_SEED = 20261207


def inputs(renders: int, root: Path) -> tuple[dict[str, tuple[bytes, str]], dict[str, str]]:
    """The files to drop (name -> bytes, extension) and each one's kind by record id."""
    files: dict[str, tuple[bytes, str]] = {}
    kind: dict[str, str] = {}
    chest = write_dataset("chest", renders, FRESH_SEED, root / "chest")
    for path in sorted((chest / "images").glob("*.png")):
        data = path.read_bytes()
        files[f"chest-{path.stem}"] = (data, "png")
        kind[hashlib.sha256(data).hexdigest()] = "radiograph"
    for photo in PHOTOS:
        data, ext, _ = photo_image(photo)
        files[f"photo-{photo.id}"] = (data, ext)
        kind[hashlib.sha256(data).hexdigest()] = "photograph"
    return files, kind


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--renders", type=int, default=200)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="s3e-routing-") as tmp:
        root = Path(tmp)
        files, kind = inputs(args.renders, root)
        d = start_daemon("chest-int8", root, catch_all="photos-int8", workers=2)
        try:
            seconds = drop_and_wait(d, files)
            analysed_by = {rid: (d.store.get(rid).bundle or "").split("@")[0] for rid in kind}
        finally:
            d.stop()
    want = {"radiograph": "chest-int8", "photograph": "photos-int8"}
    out: dict[str, Any] = {"bundles": want, "images_per_s": round(len(files) / seconds, 1)}
    for k, bundle in want.items():
        mine = [rid for rid, v in kind.items() if v == k]
        wrong = [rid for rid in mine if analysed_by[rid] != bundle]
        out[k] = {
            "n": len(mine),
            "misrouted": len(wrong),
            "share": round(len(wrong) / len(mine), 4),
        }
        print(f"{k}s: {len(wrong)} of {len(mine)} misrouted ({100 * len(wrong) / len(mine):.1f}%)")
    print(f"{len(files)} images analysed and indexed in {seconds:.1f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
