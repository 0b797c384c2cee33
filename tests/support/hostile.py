"""A generator of hostile inputs: files a device may be handed by a careless or malicious
sender. Each is (name, bytes, kind of trouble); `folder_extras` adds what only a file system
can hold (links, FIFOs, huge sparse files). Deterministic for a seed."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

Hostile = tuple[str, bytes, str]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    """A valid-looking PNG whose header claims width x height but carries a tiny stream."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def png_zeros(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    """A real PNG of zeros: compresses to almost nothing, decodes to width x height pixels."""
    bpp = {(8, 0): 1, (16, 0): 2, (8, 2): 3, (8, 6): 4}[(depth, colour)]
    z = zlib.compressobj(9)
    row = b"\x00" * (1 + width * bpp)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 header is rewritten to claim width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def encoded(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def good_images(n: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """Plain images that must be accepted: noise textures in the accepted formats."""
    rng = np.random.default_rng(seed)
    formats = [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"), ("bmp", "BMP"), ("tif", "TIFF")]
    for i in range(n):
        ext, fmt = formats[i % len(formats)]
        arr = rng.integers(0, 255, (48 + i, 64, 3), dtype=np.uint8)
        yield f"good-{i:03d}.{ext}", encoded(Image.fromarray(arr), fmt)


def hostile(seed: int = 0) -> Iterator[Hostile]:
    """At least 300 hostile byte strings, named like images."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    samples = {
        "jpg": encoded(base, "JPEG", quality=90),
        "png": encoded(base, "PNG"),
        "gif": encoded(base.convert("P"), "GIF"),
        "webp": encoded(base, "WEBP"),
        "tif": encoded(base, "TIFF"),
        "bmp": encoded(base, "BMP"),
    }
    for ext, data in samples.items():  # truncated at many lengths
        cuts = (1, 2, 4, 8, 16, 24, 40, 70, 100, 200, 300, 600, len(data) // 3, len(data) // 2)
        for cut in (*cuts, len(data) - 200, len(data) - 20):
            yield f"truncated-{ext}-{cut}.{ext}", data[:cut], "truncated"
    for ext, data in samples.items():  # bit flips and garbled spans
        for k in range(20):
            b = bytearray(data)
            for pos in rng.integers(0, len(b), 1 + k * 3):
                b[pos] ^= 1 << int(rng.integers(0, 8))
            yield f"flipped-{ext}-{k}.{ext}", bytes(b), "bit-flipped"
            if k < 6:
                b = bytearray(data)
                start = int(rng.integers(8, len(b) - 64))
                b[start : start + 64] = rng.integers(0, 255, 64, dtype=np.uint8).tobytes()
                yield f"garbled-{ext}-{k}.{ext}", bytes(b), "garbled"
    for w, h in ((8000, 8000), (1, 64_000_000), (64_000_000, 1), (30000, 30000), (2**31 - 1, 2)):
        yield f"bomb-png-{w}x{h}.png", png_claiming(w, h), "bomb header"
        yield f"bomb-png16-{w}x{h}.png", png_claiming(w, h, 16), "bomb header"
        yield (
            f"bomb-jpeg-{w % 65536}x{h % 65536}.jpg",
            jpeg_claiming(w % 65535 or 1, h % 65535 or 1),
            "bomb",
        )
    yield "wide-zeros.png", png_zeros(30000, 2), "too wide"
    yield "grey16-zeros.png", png_zeros(5000, 5000, 16), "16-bit, decodes large"
    yield "rgba-zeros.png", png_zeros(4000, 4000, 8, 6), "RGBA, decodes large"
    yield "float.tif", encoded(Image.fromarray(np.zeros((2500, 2500), np.float32)), "TIFF"), "float"
    big_exif = Image.Exif()
    big_exif[0x010E] = "x" * 60000  # ImageDescription
    yield "huge-exif.jpg", encoded(base, "JPEG", exif=big_exif.tobytes()), "huge EXIF (valid)"
    yield "huge-icc.jpg", encoded(base, "JPEG", icc_profile=os.urandom(200_000)), "huge ICC"
    frames = [
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).convert("P")
        for _ in range(60)
    ]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    yield "animated.gif", buf.getvalue(), "animated (valid)"
    texts = {
        "html.jpg": b"<html><script>alert(1)</script></html>",
        "svg.png": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        "zip.jpg": b"PK\x03\x04" + os.urandom(200),
        "pdf.png": b"%PDF-1.4\n" + os.urandom(300),
        "eps.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8000 8000\nshowpage\n",
        "psd.png": b"8BPS\x00\x01" + os.urandom(100),
        "elf.jpg": b"\x7fELF" + os.urandom(200),
        "nul.png": b"\x00" * 1000,
        "one.jpg": b"\xff",
        "empty.png": b"",
    }
    for name, data in texts.items():
        yield name, data, "not an image"
    tga = encoded(Image.new("RGB", (16, 16)), "TGA")
    tga = tga[:12] + struct.pack("<HH", 8000, 8000) + tga[16:]
    yield "big.tga", tga, "TGA"
    yield "icon.ico", encoded(base.resize((32, 32)), "ICO"), "ICO"
    polyglot = samples["jpg"] + b"<script>alert(1)</script>" + b"PK\x05\x06" + bytes(18)
    yield "polyglot.jpg", polyglot, "polyglot (valid JPEG first)"
    for i in range(20):  # random bytes with a real magic number
        magic = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF", b"II*\x00", b"BM"][
            i % 6
        ]
        yield f"magic-{i}.img", magic + rng.integers(0, 255, 500, dtype=np.uint8).tobytes(), "magic"
    long_name = "a" * 230 + ".png"
    yield long_name, b"not an image at all", "long name"
    yield "line\nERROR forged log line.png", b"not an image", "newline in the name"
    yield "ünïcødé-\u202ename.jpg", b"nope", "unicode name"


def folder_extras(inbox: Path, outside: Path) -> list[tuple[Path, str]]:
    """What only a file system holds: links, a FIFO, a huge sparse file (created in `inbox`)."""
    secret = outside / "secret.png"
    secret.write_bytes(encoded(Image.new("RGB", (32, 32), (1, 2, 3)), "PNG"))
    secret.chmod(0o600)
    made = []
    for name, target in (
        ("zero.jpg", "/dev/zero"),
        ("random.png", "/dev/urandom"),
        ("secret-link.png", str(secret)),
        ("dangling.png", "/nonexistent/x"),
        ("dir-link.jpg", str(outside)),
    ):
        (inbox / name).symlink_to(target)
        made.append((inbox / name, "link"))
    fifo = outside / "pipe"
    os.mkfifo(fifo)
    (inbox / "fifo-link.png").symlink_to(fifo)
    made.append((inbox / "fifo-link.png", "link to a FIFO"))
    os.mkfifo(inbox / "fifo.jpg")
    made.append((inbox / "fifo.jpg", "FIFO"))
    with open(inbox / "huge.png", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse
    made.append((inbox / "huge.png", "1 GiB file"))
    return made
