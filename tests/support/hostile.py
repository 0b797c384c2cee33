"""A generator of hostile inputs: files a device may be handed by a careless or malicious
sender. Each is (name, bytes, kind of trouble); `folder_extras` adds what only a file system
can hold (links, FIFOs, huge sparse files); `hostile_dicom` DICOM files, each with the kind of
refusal it must get. Deterministic for a seed."""

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
HostileDicom = tuple[str, bytes, str, str]
"""(name, bytes, kind of trouble, the kind of refusal it must get)."""


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


def _dicom_lie(data: bytes, tag: bytes, length: bytes) -> bytes:
    """`data` with the length of the element whose tag and VR are `tag` replaced by `length`."""
    i = data.index(tag) + len(tag)
    if tag[4:6] in (b"OB", b"OW", b"SQ", b"UN"):  # a 32-bit length after two reserved bytes
        i += 2
    return data[:i] + length + data[i + len(length) :]


def _dicom_nested(data: bytes, depth: int) -> bytes:
    """`data` with `depth` sequences of undefined length nested one in the other's item, put
    before the patient's name (Referenced Series Sequence, which the profile keeps)."""
    sequence = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff"
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    ends = b"\xfe\xff\x0d\xe0" + bytes(4) + b"\xfe\xff\xdd\xe0" + bytes(4)
    i = data.index(b"\x10\x00\x10\x00PN")
    return data[:i] + (sequence + item) * depth + ends * depth + data[i:]


def hostile_dicom() -> Iterator[HostileDicom]:
    """DICOM files cut short, lying, oversized, nested without end, or not what this device
    reads. Each carries the patient's identity (`dicom_files.IDENTITY`), which no refusal
    may quote."""
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset
    from pydicom.uid import MPEG2MPML, BasicTextSRStorage

    from support import dicom_files as df

    stored = df.chest_phantom(64, bits=12)
    plain = df.write(stored, bits_stored=12)
    pixels = df.pixel_offset(plain)
    yield "cut-in-pixels.dcm", plain[: pixels + 2000], "truncated in its pixel data", "corrupt"
    yield "cut-in-header.dcm", plain[: pixels // 2], "truncated in its header", "corrupt"
    yield "cut-in-meta.dcm", plain[:150], "truncated in its file meta information", "corrupt"
    yield "magic-only.dcm", bytes(128) + b"DICM" + bytes(64), "DICM and nothing", "corrupt"
    lie = _dicom_lie(plain, b"\x08\x00\x70\x00LO", b"\xf0\xff")
    yield "length-past-end.dcm", lie, "an element's length far past the end", "corrupt"
    lie = _dicom_lie(plain, b"\xe0\x7f\x10\x00OW", b"\xf0\xff\xff\x7f")
    yield "pixel-length-past-end.dcm", lie, "pixel data said to be 2 GB", "corrupt"
    polyglot = df.tiff_preamble(plain)
    broken = _dicom_lie(polyglot, b"\x08\x00\x70\x00LO", b"\xf0\xff")
    yield "tiff-preamble-broken.dcm", broken, "a valid TIFF, a broken DICOM", "corrupt"
    yield "nested-5000.dcm", _dicom_nested(plain, 5000), "sequences 5000 deep", "corrupt"
    as_numbers = plain.replace(b"\x10\x00\x10\x00PN", b"\x10\x00\x10\x00FD")
    yield "name-as-numbers.dcm", as_numbers, "the patient's name read as numbers", "corrupt"
    for rows, cols, kind in ((65535, 65535, "too_large"), (7000, 7000, "corrupt")):
        ds = df.image(np.zeros((4, 4), np.uint16), bits_stored=12)
        ds.Rows, ds.Columns = rows, cols  # the pixel data stays 32 bytes
        yield f"claims-{rows}x{cols}.dcm", df._save(ds, b""), "huge rows x columns", kind
    yield "multi-frame.dcm", df.multi_frame(3), "multi-frame", "multi_frame"
    report = Dataset()
    report.file_meta = df.image(np.zeros((4, 4), np.uint8)).file_meta
    report.SOPClassUID, report.SOPInstanceUID = BasicTextSRStorage, df.UIDS["SOPInstanceUID"]
    report.Modality = "SR"
    for keyword, value in df.IDENTITY.items():
        setattr(report, keyword, value)
    yield "report.dcm", df._save(report, b""), "a structured report: no pixels", "not_an_image"
    plan = Path(get_testdata_file("rtplan.dcm") or "").read_bytes()
    yield "rt-plan.dcm", plan, "an RT plan: no pixels", "not_an_image"
    yield "mpeg2.dcm", df.declaring(MPEG2MPML), "a video transfer syntax", "unsupported"
    for syntax in (df.RLELossless, df.JPEGLSLossless):  # the compressed stream garbled
        packed = df.write(stored, syntax, bits_stored=12)
        garbled = packed[:-600] + b"\xff\x00" * 150 + packed[-300:]
        yield f"garbled-{syntax.keyword}.dcm", garbled, "a garbled compressed stream", "corrupt"
    twelve = df.write(stored, df.JPEGExtended12Bit, bits_stored=12)
    yield "jpeg-extended-12.dcm", twelve, "12-bit JPEG Extended", "unsupported"
    palette = df.write(stored.astype(np.uint8), photometric="PALETTE COLOR")
    yield "palette.dcm", palette, "palette colour", "unsupported"
    yield (
        "burned-in.dcm",
        df.write(stored, bits_stored=12, BurnedInAnnotation="YES"),
        "burned-in annotation, identity not kept",
        "identifying",
    )
