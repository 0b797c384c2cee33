"""DICOM in: a radiograph as a hospital stores it, read as a radiologist's viewer shows it, and
kept without the patient's identity.

A Part 10 file (`DICM` at byte 128, whatever its preamble holds: some are TIFF files too) is
read with pydicom. The header is read first, so an object that is not a single image, a
transfer syntax this device cannot decode, or rows x columns over the limits is refused with a
reason before any pixel is decoded. The pixels then go through what the file says a viewer
does: the modality LUT (rescale slope and intercept), the VOI LUT or window, MONOCHROME1
inverted, and stay floating point (12 to 16 bits of them) until the model's preprocessing.

The file kept is de-identified unless the config keeps identity (`edge.ingest.deidentify`:
the standard's Basic Application Level Confidentiality Profile). An image whose pixels carry
burned-in annotation is refused unless identity is kept: no attribute edit can clean its
pixels.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.ingest.deidentify import deidentify

DICM_OFFSET = 128
MAX_ATTRIBUTE_CHARS = 64
ATTRIBUTES = {
    "modality": "Modality",
    "body_part": "BodyPartExamined",
    "view_position": "ViewPosition",
    "study_date": "StudyDate",
    "manufacturer": "Manufacturer",
}
"""What a user filters on, by our name and the attribute's keyword."""
DECODABLE = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless, First-Order Prediction (Process 14 SV1)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 (Lossless Only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
}
"""Transfer syntaxes decoded here (pydicom's own for the native ones and RLE, GDCM and Pillow
for the JPEG family); others are refused by name. JPEG Extended is read at 8 bits only: no
decoder here takes its 12-bit samples (refused, named, when the pixels are decoded)."""
GREY = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422")
JPEG_2000_COLOUR = ("YBR_RCT", "YBR_ICT")
"""Colour a JPEG 2000 file says when its encoder used the multi-component transform (PS3.5
8.2.4); the codec undoes it, so the pixels come out RGB."""
JPEG_2000 = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
OWN_RANGE_SAMPLE = 1 << 20
"""Pixels looked at, at most, for an image's own range (a regular grid of them)."""


class DicomRefusedError(ValueError):
    """A DICOM file that is not read here; `kind` and the message say why."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


@dataclass
class DicomImage:
    pixels: np.ndarray
    """(H, W) greyscale or (H, W, 3) colour, float32 in [0, 1], as a viewer shows it."""
    attributes: dict[str, str]
    """What a user filters on (`ATTRIBUTES`), those the file has."""
    kept: bytes
    """The file to keep: de-identified, or the one received when identity is kept."""


def is_dicom(data: bytes) -> bool:
    """A Part 10 file: `DICM` after the 128-byte preamble (which may be a TIFF header)."""
    return data[DICM_OFFSET : DICM_OFFSET + 4] == b"DICM"


@contextlib.contextmanager
def _refusing(what: str) -> Iterator[None]:
    """Whatever pydicom or a decoder raises on a hostile or broken file, as one refusal naming
    what failed: pydicom converts an element when it is first read, so any access to a
    dataset read from the file happens inside this."""
    _quiet_pydicom()
    try:
        yield
    except DicomRefusedError:
        raise
    except MemoryError:
        raise DicomRefusedError("too_large", f"not enough memory to {what}") from None
    except RecursionError:
        raise DicomRefusedError("corrupt", f"cannot {what}: sequences nested too deep") from None
    except Exception as e:  # pydicom's own errors (BytesLengthException...) included
        why = _withheld(str(e))
        raise DicomRefusedError("corrupt", f"cannot {what} ({type(e).__name__}: {why})") from None


_QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'" + r'|b?"(?:[^"\\]|\\.)*"')


def _withheld(message: str) -> str:
    """`message` without the values it quotes (a VR's two letters kept): pydicom quotes the
    value at fault (a patient's name read as numbers), and a refusal's reason is logged."""
    return _QUOTED.sub(lambda m: m[0] if len(m[0].lstrip("b")) <= 4 else "<withheld>", message)


@functools.cache
def _quiet_pydicom() -> None:
    """Once, before pydicom first reads a file. pydicom checks each value it converts against
    its VR and warns of one that fails, quoting it (a UID with a leading zero): that would put
    the patient's identity in the log. The check is not needed here: a value that cannot be
    read refuses the file."""
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    # each decoder that fails logs a traceback at ERROR; the refusal says why, once
    logging.getLogger("pydicom.pixels.decoders.base").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Header:
    rows: int
    columns: int
    samples: int
    bits: int

    @property
    def pixel_bytes(self) -> int:
        """What decoding it takes at its peak, measured: the decoded samples up to three times
        (as decoders hand them over and convert them), a float32 copy to display, and the
        image made of that."""
        pixels = self.rows * self.columns
        stored = 1 if self.bits <= 8 else 2
        return pixels * (self.samples * (3 * stored + 5) + 4)


def header(data: bytes) -> Header:
    """What the header says of the image, checked: one image this device can decode."""
    from pydicom import dcmread

    with _refusing("read the DICOM header"):
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        _whole(ds.file_meta)
        _whole(ds)
        syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(str(ds.get("NumberOfFrames", 1) or 1))
        photometric = str(ds.get("PhotometricInterpretation", "") or "")
        bits = int(ds.get("BitsAllocated", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        sop = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if not rows or not cols or not bits:
        kind = _uid_name(sop)
        if not kind or "Image Storage" in kind:  # an image's class: the file was cut short
            why = f"({kind or 'no SOP class'}) with no Rows, Columns or Bits Allocated"
            raise DicomRefusedError("corrupt", f"a DICOM file {why}: truncated?")
        raise DicomRefusedError("not_an_image", f"a DICOM object with no image ({kind})")
    if frames != 1:
        raise DicomRefusedError("multi_frame", f"a multi-frame DICOM ({frames} frames)")
    if syntax not in DECODABLE:
        name = _uid_name(syntax) or syntax or "none given"
        raise DicomRefusedError(
            "unsupported", f"DICOM transfer syntax {name} ({syntax}) is not decoded here"
        )
    colour = COLOUR + (JPEG_2000_COLOUR if syntax in JPEG_2000 else ())
    if photometric not in GREY + colour:
        raise DicomRefusedError("unsupported", f"photometric interpretation {photometric!r}")
    if bits > 16:
        raise DicomRefusedError("unsupported", f"{bits} bits a sample (at most 16 are read)")
    return Header(rows, cols, samples, bits)


def _whole(ds: Any) -> None:
    """Refuse a file that ends inside an element (cut short, or a length past its end), which
    pydicom reads as what there is; in the items of its sequences too."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.dataelem import RawDataElement

    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement):
            got = len(elem.value or b"")
            if elem.value is not None and elem.length != 0xFFFFFFFF and got < elem.length:
                name = keyword_for_tag(elem.tag) or str(elem.tag)
                why = f"its length says {elem.length} bytes, {got} are there (cut short?)"
                raise DicomRefusedError("corrupt", f"the file ends inside {name}: {why}")
        elif elem is not None and elem.VR == "SQ":
            for item in elem.value:
                _whole(item)


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    try:
        name = UID(uid).name if uid else ""
    except (ValueError, KeyError):
        return ""
    return name if name != uid else ""


def read(data: bytes, keep_identity: bool) -> DicomImage:
    """The image as a viewer shows it, its attributes and the file to keep. The caller has
    checked `header(data)` against its size limits and reserved the decode budget."""
    from pydicom import dcmread

    with _refusing("decode the DICOM pixels"):
        ds = dcmread(io.BytesIO(data))
        _whole(ds[0x7FE00010:0x7FE00011])  # the pixel data, read now
        try:
            pixels = _display(ds)
        except (RuntimeError, NotImplementedError) as e:  # no decoder took the pixels
            syntax = DECODABLE.get(str(ds.file_meta.TransferSyntaxUID), "its transfer syntax")
            raise _undecoded(syntax, e) from None
        attributes = {ours: _printable(ds.get(keyword, "")) for ours, keyword in ATTRIBUTES.items()}
        burned_in = str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES"
    attributes = {k: v for k, v in attributes.items() if v}
    if keep_identity:
        return DicomImage(pixels, attributes, data)
    if burned_in:
        raise DicomRefusedError(
            "identifying",
            "its pixels carry burned-in annotation (BurnedInAnnotation = YES): no edit of its "
            "attributes can take the patient's identity out (dicom.keep_identity keeps it)",
        )
    with _refusing("de-identify the DICOM file"):
        kept = deidentify(ds)
    return DicomImage(pixels, attributes, kept)


def _undecoded(syntax: str, e: Exception) -> DicomRefusedError:
    """Each decoder pydicom tried says why it failed, a line each: all saying they do not
    support the samples (12-bit JPEG Extended) is `unsupported`, one failing on the data not."""
    tried = str(e).startswith("Unable to decode as exceptions were raised by all")
    why = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()] or [str(e)]
    broken = [w for w in why if tried and "support" not in w]
    if broken:
        return DicomRefusedError("corrupt", f"{syntax}: cannot decode the pixels ({broken[0]})")
    return DicomRefusedError("unsupported", f"{syntax}: {why[0]}")


def _display(ds: Any) -> np.ndarray:
    """Stored values to what a viewer shows, in [0, 1], float32 and worked on in place (a
    radiograph is tens of millions of pixels): the modality LUT, then the window (its first
    one) or the VOI LUT, then MONOCHROME1 inverted. A file with neither takes its own range,
    the extremes of a few pixels cut."""
    from pydicom.pixels import pixel_array

    # YBR_FULL, YBR_FULL_422 and JPEG 2000's YBR_RCT / YBR_ICT come out as RGB (as_rgb)
    arr = pixel_array(ds, as_rgb=True)
    photometric = str(ds.PhotometricInterpretation)
    if photometric not in GREY:
        out = arr.astype(np.float32)
        del arr
        out /= max(float(2 ** int(ds.get("BitsStored", 8) or 8) - 1), 1.0)
        return np.clip(out, 0.0, 1.0, out=out)
    values = _modality(arr, ds)
    del arr
    given = _window_of(ds)
    if given is not None:
        out = window(values, *given, ds)
    elif ds.get("VOILUTSequence"):
        out = _voi_lut(values, ds)
    else:
        step = max(1, int(np.ceil(np.sqrt(values.size / OWN_RANGE_SAMPLE))))
        sample = values[::step, ::step] if values.ndim == 2 else values[::step]
        low, high = (float(v) for v in np.percentile(sample, (0.1, 99.9)))
        out = values
        out -= low
        out /= max(high - low, 1e-9)
    np.clip(out, 0.0, 1.0, out=out)
    if photometric == "MONOCHROME1":
        np.subtract(1.0, out, out=out)
    return out


def _modality(arr: np.ndarray, ds: Any) -> np.ndarray:
    """The modality LUT (PS3.3 C.11.1): its LUT, or the rescale slope and intercept, float32."""
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds), np.float32)
    values = arr.astype(np.float32)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope not in (None, "") and float(slope) != 1.0:
        values *= float(slope)
    if intercept not in (None, "") and float(intercept) != 0.0:
        values += float(intercept)
    return values


def window(values: np.ndarray, center: float, width: float, ds: Any) -> np.ndarray:
    """PS3.3 C.11.2.1.2-3: LINEAR (the default), LINEAR_EXACT or SIGMOID, onto [0, 1], in
    place (`values` is float)."""
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function == "SIGMOID":
        values -= center
        values *= -4.0 / max(width, 1e-9)
        with np.errstate(over="ignore"):  # far below the center: 1 / inf = 0, as it should
            np.exp(values, out=values)
        values += 1.0
        return np.reciprocal(values, out=values)
    if function == "LINEAR_EXACT":
        values -= center
        values /= max(width, 1e-9)
    else:
        values -= center - 0.5
        values /= max(width - 1.0, 1e-9)
    values += 0.5
    return values


def _voi_lut(values: np.ndarray, ds: Any) -> np.ndarray:
    """The first VOI LUT (PS3.3 C.11.2.1.1): a value below its first mapped one takes its first
    entry, one past its end its last, scaled by its bits an entry onto [0, 1]. (pydicom's
    `apply_voi` indexes the table in the entries' own type, so an 8-bit table of more than
    256 entries wraps.)"""
    item = ds.VOILUTSequence[0]
    entries, first, bits = (int(v) for v in item.LUTDescriptor[:3])
    data = item.LUTData
    if isinstance(data, bytes):  # OW
        big = str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.2"
        lut = np.frombuffer(data, ">u2" if big else "<u2").astype(np.float32)
    else:
        lut = np.asarray(data if isinstance(data, list | tuple) else [data], np.float32)
    lut = lut[: entries or 65536]
    lut /= float(2**bits - 1)
    np.rint(values, out=values)
    values -= first
    np.clip(values, 0, len(lut) - 1, out=values)
    for i in range(0, len(values), 256):  # in place, a band of rows at a time
        values[i : i + 256] = lut[values[i : i + 256].astype(np.intp)]
    return values


def _window_of(ds: Any) -> tuple[float, float] | None:
    """The first window's center and width, or None where the file gives none a viewer could
    use (absent, empty, not a number, a width under 1): the VOI LUT or the image's own range
    then shows it, as a viewer would, rather than the image being refused."""
    from pydicom.multival import MultiValue

    try:
        given = [ds.get("WindowCenter"), ds.get("WindowWidth")]
        center, width = (float(v[0] if isinstance(v, MultiValue) else v) for v in given)
    except (TypeError, ValueError, IndexError):
        return None
    return (center, width) if np.isfinite(center) and np.isfinite(width) and width >= 1 else None


def _printable(value: Any) -> str:
    text = str(value or "").strip()
    text = "".join(c for c in text if c.isprintable())
    return text[:MAX_ATTRIBUTE_CHARS]
