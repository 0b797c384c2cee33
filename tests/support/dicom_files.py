"""DICOM Part 10 files written from numpy arrays of our own, for the tests: any photometric
interpretation, 8 to 16 bits, signed or not, a rescale, windows (one or several), a VOI LUT,
a patient's identity, and every compressed transfer syntax this machine can write (RLE with
pydicom's encoder, JPEG Baseline and JPEG 2000 from Pillow, encapsulated, JPEG Lossless,
JPEG Extended and JPEG-LS transcoded by GDCM). Also the raw pieces hostile files are made of:
a preamble that is a TIFF header, elements written byte by byte."""

from __future__ import annotations

import io
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

IDENTITY = {
    "PatientName": "QUIXOTE^ALONSO^DE LA MANCHA",
    "PatientID": "PID-7731-0442",
    "PatientBirthDate": "19380914",
    "AccessionNumber": "ACC90210X77",
    "InstitutionName": "Hospital Rocinante del Toboso",
    "ReferringPhysicianName": "PANZA^SANCHO",
    "StudyDate": "20230517",
}
"""A patient, a study and the people and place involved: strings found nowhere else."""
PRIVATE_CREATOR, PRIVATE_VALUE = "ACME IMAGING 1.0", "PRIVATE-BLOCK-SECRET-5521"
OVERLAY_LABEL = "OVERLAY-LABEL-SECRET-3310"
UIDS = {
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.111",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.222",
    "SOPInstanceUID": "1.2.826.0.1.3680043.8.498.333",
    "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.444",
}
"""Fixed UIDs (this test suite's own root), so the same array gives the same file."""

LOSSLESS = (
    RLELossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
)
LOSSY = (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000)
NATIVE = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)
_GDCM = {
    JPEGExtended12Bit: "JPEGExtendedProcess2_4",
    JPEGLossless: "JPEGLosslessProcess14",
    JPEGLosslessSV1: "JPEGLosslessProcess14_1",
    JPEGLSLossless: "JPEGLSLossless",
    JPEGLSNearLossless: "JPEGLSNearLossless",
}
"""The syntaxes GDCM writes here, by its name for them."""
NEAR = 2
"""JPEG-LS near-lossless: the largest error a sample may have (the encoder's NEAR)."""


def chest_phantom(size: int = 128, seed: int = 3, bits: int = 12) -> np.ndarray:
    """A generated chest radiograph (`models.data.chest`), its 8 bits spread over `bits`, with
    noise in the low bits so neighbouring stored values differ by one."""
    from models.data.chest import generate

    base = generate(np.random.default_rng(seed), size).image.astype(np.int64)
    spread = base << (bits - 8)
    low = np.random.default_rng(seed).integers(0, 1 << (bits - 8), base.shape)
    return (spread | low).astype(np.uint16 if bits > 8 else np.uint8)


def gradient(rows: int, cols: int, low: int, high: int, dtype: Any) -> np.ndarray:
    """Every value from low to high along the rows, each column the same."""
    line = np.linspace(low, high, cols).round()
    return np.tile(line, (rows, 1)).astype(dtype)


def voi_lut(first_mapped: int, lut: np.ndarray, bits: int) -> Dataset:
    """One VOI LUT Sequence item: `lut[i]` is the output for stored value first_mapped + i."""
    item = Dataset()
    item.LUTDescriptor = [len(lut) % 65536, first_mapped, bits]
    item.LUTData = [int(v) for v in lut]
    item["LUTDescriptor"].VR = "SS" if first_mapped < 0 else "US"
    item["LUTData"].VR = "US"
    return item


def image(
    pixels: np.ndarray,
    *,
    photometric: str | None = None,
    bits_stored: int | None = None,
    identity: bool = True,
    private: bool = False,
    overlay: bool = False,
    sop_class: str = DigitalXRayImageStorageForPresentation,
    **attributes: Any,
) -> Dataset:
    """A single-frame image dataset of `pixels` ((H, W) greyscale or (H, W, 3) colour; uint8,
    int8, uint16 or int16 give BitsAllocated and PixelRepresentation), a DX chest PA by
    default; `identity`: with `IDENTITY` and fixed UIDs; `private`: a private block holding
    `PRIVATE_VALUE`; `overlay`: an overlay plane labelled `OVERLAY_LABEL`; `attributes`: any
    others by keyword (a list is multi-valued)."""
    colour = pixels.ndim == 3
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.Manufacturer = "S3E Phantoms"
    ds.PatientOrientation = ["P", "F"]
    for keyword, uid in UIDS.items():
        setattr(ds, keyword, uid)
    if identity:
        for keyword, value in IDENTITY.items():
            setattr(ds, keyword, value)
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric or ("RGB" if colour else "MONOCHROME2")
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(np.issubdtype(pixels.dtype, np.signedinteger))
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    if private:
        block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
        block.add_new(0x10, "LO", PRIVATE_VALUE)
        block.add_new(0x11, "LO", IDENTITY["PatientName"])
    if overlay:
        rows, cols = ds.Rows, ds.Columns
        ds.add_new(0x60000010, "US", rows)
        ds.add_new(0x60000011, "US", cols)
        ds.add_new(0x60000040, "CS", "G")
        ds.add_new(0x60000050, "SS", [1, 1])
        ds.add_new(0x60000100, "US", 1)
        ds.add_new(0x60000102, "US", 0)
        ds.add_new(0x60001500, "LO", OVERLAY_LABEL)
        bits = np.zeros(rows * cols, np.uint8)
        bits[: cols * 4] = 1  # a band along the top: burnt-in text as an overlay shows it
        ds.add_new(0x60003000, "OW", np.packbits(bits, bitorder="little").tobytes())
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def part10(
    ds: Dataset, syntax: str = ExplicitVRLittleEndian, preamble: bytes = b"", mct: bool = False
) -> bytes:
    """The dataset as a Part 10 file in `syntax` (compressed as the module says); `preamble`:
    its 128 bytes (zeros if none); `mct`: colour JPEG 2000 with its multi-component
    transform (YBR_RCT lossless, YBR_ICT lossy), as most encoders write it."""
    ds = _copy(ds)
    syntax = UID(syntax)
    if syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
    elif syntax == ExplicitVRBigEndian:
        _to_big_endian(ds)
    elif syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif syntax in (JPEGBaseline8Bit, JPEG2000Lossless, JPEG2000):
        _pillow(ds, syntax, mct)
    elif syntax in _GDCM:
        return _gdcm(ds, syntax, preamble)
    else:
        raise ValueError(f"cannot write {syntax.name} here")
    return _save(ds, preamble)


def write(
    pixels: np.ndarray, syntax: str = ExplicitVRLittleEndian, mct: bool = False, **kw: Any
) -> bytes:
    """`part10(image(pixels, **kw), syntax, mct=mct)`."""
    return part10(image(pixels, **kw), syntax, mct=mct)


def declaring(syntax: str, frame: bytes = b"\x00\x00\x01\xba" + bytes(60)) -> bytes:
    """A small image whose file says `syntax` (e.g. MPEG2), one encapsulated `frame` of it."""
    ds = image(np.zeros((16, 16), np.uint8))
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _save(ds, b"")


def multi_frame(frames: int = 3, size: int = 16) -> bytes:
    """A native multi-frame image (`NumberOfFrames`)."""
    ds = image(np.zeros((size, size), np.uint8))
    ds.NumberOfFrames = frames
    ds.PixelData = bytes(frames * size * size)
    return _save(ds, b"")


def tiff_preamble(data: bytes) -> bytes:
    """`data` (a native greyscale Part 10 file whose last element is its pixel data) with a
    preamble that is a little-endian TIFF header: an IFD describing the same pixel data as
    a BlackIsZero TIFF. Pillow opens the result as that TIFF; a DICOM reader as the DICOM."""
    ds = dcmread(io.BytesIO(data))
    rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
    offset = len(data) - len(ds.PixelData)
    entries = [  # tag, type (3 SHORT, 4 LONG), value
        (256, 4, cols),
        (257, 4, rows),
        (258, 3, bits),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, offset),
        (277, 3, 1),
        (278, 4, rows),
        (279, 4, rows * cols * bits // 8),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    header = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    assert len(header) <= 128
    return header.ljust(128, b"\x00") + data[128:]


def pixel_offset(data: bytes) -> int:
    """Where a native file's pixel data (its last element) starts."""
    ds = dcmread(io.BytesIO(data))
    return len(data) - len(ds.PixelData)


def _copy(ds: Dataset) -> Dataset:
    """A deep copy through bytes (pydicom's copies share sequence items)."""
    return dcmread(io.BytesIO(_save(ds, b"")))


def _save(ds: Dataset, preamble: bytes) -> bytes:
    if "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.preamble = preamble.ljust(128, b"\x00") if preamble else b"\x00" * 128
    out = io.BytesIO()
    if ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian:  # pydicom writes it if forced
        dcmwrite(out, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    else:
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _to_big_endian(ds: Dataset) -> None:
    arr = np.frombuffer(ds.PixelData, _dtype(ds))
    ds.PixelData = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _dtype(ds: Dataset) -> np.dtype[Any]:
    signed = int(ds.PixelRepresentation) == 1
    kind = {8: "i1" if signed else "u1", 16: "<i2" if signed else "<u2"}
    return np.dtype(kind[int(ds.BitsAllocated)])


def _array(ds: Dataset) -> np.ndarray:
    arr = np.frombuffer(ds.PixelData, _dtype(ds))
    shape = (int(ds.Rows), int(ds.Columns))
    return arr.reshape(*shape, 3) if int(ds.SamplesPerPixel) == 3 else arr.reshape(shape)


def _pillow(ds: Dataset, syntax: UID, mct: bool) -> None:
    """JPEG Baseline (8-bit; colour as YCbCr 4:2:2, so YBR_FULL_422) or JPEG 2000 (8 or 16
    bits unsigned; lossless, or lossy at about 20:1) from Pillow, encapsulated."""
    arr = _array(ds)
    buf = io.BytesIO()
    if syntax == JPEGBaseline8Bit:
        if arr.dtype != np.uint8:
            raise ValueError("JPEG Baseline takes 8-bit samples")
        Image.fromarray(arr).save(buf, "JPEG", quality=90, subsampling=1)
        if arr.ndim == 3:
            ds.PhotometricInterpretation = "YBR_FULL_422"
    else:
        if arr.dtype not in (np.uint8, np.uint16):
            raise ValueError("Pillow writes JPEG 2000 of unsigned samples")
        lossy = syntax == JPEG2000
        options: dict[str, Any] = {"no_jp2": True, "irreversible": lossy, "mct": int(mct)}
        if mct and arr.ndim == 3:
            ds.PhotometricInterpretation = "YBR_ICT" if lossy else "YBR_RCT"
        if lossy:
            options.update(quality_mode="rates", quality_layers=[20])
        Image.fromarray(arr).save(buf, "JPEG2000", **options)
    if syntax != JPEG2000Lossless:
        ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax


def _gdcm(ds: Dataset, syntax: UID, preamble: bytes) -> bytes:
    """Transcoded by GDCM (python-gdcm) from the file in Explicit VR Little Endian."""
    import gdcm

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        src.write_bytes(_save(ds, b""))
        reader = gdcm.ImageReader()
        reader.SetFileName(str(src))
        if not reader.Read():
            raise RuntimeError("GDCM cannot read the file it is to transcode")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, _GDCM[syntax])))
        if syntax == JPEGLSNearLossless:
            codec = gdcm.JPEGLSCodec()
            codec.SetLossless(False)
            codec.SetLossyError(NEAR)
            change.SetUserCodec(codec)
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError(f"GDCM cannot transcode to {syntax.name}")
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(dst))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise RuntimeError(f"GDCM cannot write {syntax.name}")
        out = dcmread(dst)
    if str(out.file_meta.TransferSyntaxUID) != syntax:
        raise RuntimeError(f"GDCM wrote {out.file_meta.TransferSyntaxUID}, not {syntax}")
    return _save(out, preamble)


def sequence_of(*items: Dataset) -> Sequence:
    return Sequence(list(items))
