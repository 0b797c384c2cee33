"""The ingest cost of a camera-sized photograph: a 4000x3000 JPEG (12 MP) through what the
daemon does with it before analysis, against decoding it in full.

    python bench/ingest_12mp.py --json bench/results/ingest-12mp.json

The JPEG is a real photograph (scikit-image's Chelsea, from the registry asset) scaled to
4000x3000 and saved at quality 92 with an EXIF block. The ingest path is
`edge.ingest.imaging.decode` with the daemon's default limits and target (checks the size from
the header, decodes at a reduced scale with JPEG draft mode, applies the EXIF orientation),
`thumbnail_jpeg` and `preprocess` for the photos bundle (224x224). The reference is Pillow
decoding every pixel of the same bytes. Medians over `--rounds`, in the same process, one after
the other. The same photograph as a phone's HEIC (quality 80) is measured the same way: HEIF has
no reduced-scale decoding, so its ingest costs about its full decode.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.analysis.bundle import load_bundle
from edge.config import parse_config
from edge.ingest.imaging import decode, preprocess, thumbnail_jpeg
from models.pretrained.assets import fetch

SIZE = (4000, 3000)


def camera_photo(fmt: str = "JPEG", quality: int = 92) -> bytes:
    photo = fetch("skimage_photos")["chelsea.png"]
    with Image.open(photo) as f:
        im = f.convert("RGB").resize(SIZE, Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 1  # orientation: upright
    buf = io.BytesIO()
    im.save(buf, fmt, quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def median_ms(work: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 2)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--bundle", default="photos-int8")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    spec = load_bundle(args.bundle).doc.preprocessing
    lim = parse_config({}, "defaults").limits
    target = max(lim.thumb_size, spec.size)  # as the daemon's ingestor decodes

    def measured(data: bytes) -> dict[str, Any]:
        def ingest() -> None:
            d = decode(data, lim.max_pixels, lim.max_side, target)
            thumbnail_jpeg(d.image, lim.thumb_size)
            preprocess(d.image, spec.model_dump())

        def full() -> None:
            with Image.open(io.BytesIO(data)) as im:
                im.load()

        ingest()  # warm up both paths once
        full()
        got = {
            "width": SIZE[0],
            "height": SIZE[1],
            "bytes": len(data),
            "decoded_to": list(decode(data, lim.max_pixels, lim.max_side, target).image.size),
            "ingest_ms": median_ms(ingest, args.rounds),
            "full_decode_ms": median_ms(full, args.rounds),
        }
        got["ingest_over_full_decode"] = round(got["ingest_ms"] / got["full_decode_ms"], 3)
        return got

    result = {
        "jpeg": measured(camera_photo()),
        "heic": measured(camera_photo("HEIF", 80)),
        "rounds": args.rounds,
    }
    print(json.dumps(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
