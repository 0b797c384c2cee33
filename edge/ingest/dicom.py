"""DICOM in: a radiograph as a hospital stores it, read as a radiologist's viewer shows it, and
kept without the patient's identity.

A Part 10 file (`DICM` at byte 128, whatever its preamble holds: some are TIFF files too) is
read with pydicom. The header is read first, so an object that is not a single image, a
transfer syntax this device cannot decode, or rows x columns over the limits is refused with a
reason before any pixel is decoded. The pixels then go through what the file says a viewer
does: the modality LUT (rescale slope and intercept), the VOI LUT or window, MONOCHROME1
inverted, and stay floating point (12 to 16 bits of them) until the model's preprocessing.

The file kept is de-identified unless the config keeps identity: the attributes of the
standard's Basic Application Level Confidentiality Profile (PS3.15 Annex E) that name or date
the patient, the study or the people and places involved are removed or emptied, UIDs are
replaced by ones derived from them (the same file gives the same result), private attributes
and overlays go, and the file says it was de-identified. An image whose pixels carry burned-in
annotation is refused unless identity is kept: no attribute edit can clean its pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

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
"""Transfer syntaxes decoded here (pydicom, pylibjpeg and its plug-ins); others are refused
by name."""
GREY = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422")

REMOVED = (
    "PatientAge",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "PatientInsurancePlanCodeSequence",
    "MilitaryRank",
    "BranchOfService",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "PatientSize",
    "PatientWeight",
    "MedicalRecordLocator",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionalDepartmentName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "ScheduledPerformingPhysicianName",
    "StationName",
    "DeviceSerialNumber",
    "ProtocolName",
    "StudyDescription",
    "SeriesDescription",
    "AdmittingDiagnosesDescription",
    "ImageComments",
    "RequestAttributesSequence",
    "ReferencedPatientSequence",
    "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepDescription",
    "AcquisitionDateTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "SeriesDate",
    "SeriesTime",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "ContentSequence",
    "IssuerOfPatientID",
    "CountryOfResidence",
    "RegionOfResidence",
)
"""Removed (PS3.15 Table E.1-1, action X)."""
EMPTIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyTime",
    "ContentDate",
)
"""Kept but emptied (action Z: the attribute is required, its value is not)."""
REPLACED_UIDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)
"""Replaced by a UID derived from the original (action U)."""
UID_ROOT = "2.25."
"""UIDs from a 128-bit number (PS3.5 B.2): no organisation root needed."""


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
    """pydicom's errors on a hostile or broken file, as one refusal naming what failed."""
    try:
        yield
    except DicomRefusedError:
        raise
    except MemoryError:
        raise DicomRefusedError("too_large", f"not enough memory to {what}") from None
    except RecursionError:
        raise DicomRefusedError("corrupt", f"cannot {what}: sequences nested too deep") from None
    except (EOFError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
        raise DicomRefusedError("corrupt", f"cannot {what} ({type(e).__name__}: {e})") from None
    except (struct.error, NotImplementedError, RuntimeError, OSError) as e:
        raise DicomRefusedError("corrupt", f"cannot {what} ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class Header:
    rows: int
    columns: int
    samples: int
    bits: int

    @property
    def pixel_bytes(self) -> int:
        """What its decoded pixels take, as floats."""
        return self.rows * self.columns * self.samples * 8


def header(data: bytes) -> Header:
    """What the header says of the image, checked: one image this device can decode."""
    from pydicom import dcmread

    with _refusing("read the DICOM header"):
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(str(ds.get("NumberOfFrames", 1) or 1))
        photometric = str(ds.get("PhotometricInterpretation", "") or "")
        bits = int(ds.get("BitsAllocated", 0) or 0)
        sop = str(ds.get("SOPClassUID", "") or "")
    if not rows or not cols or not bits:
        kind = _uid_name(sop) or "no SOP class"
        raise DicomRefusedError("not_an_image", f"a DICOM object with no image ({kind})")
    if frames != 1:
        raise DicomRefusedError("multi_frame", f"a multi-frame DICOM ({frames} frames)")
    if syntax not in DECODABLE:
        name = _uid_name(syntax) or syntax or "none given"
        raise DicomRefusedError(
            "unsupported", f"DICOM transfer syntax {name} ({syntax}) is not decoded here"
        )
    if photometric not in GREY + COLOUR:
        raise DicomRefusedError("unsupported", f"photometric interpretation {photometric!r}")
    if bits > 16:
        raise DicomRefusedError("unsupported", f"{bits} bits a sample (at most 16 are read)")
    return Header(rows, cols, int(ds.get("SamplesPerPixel", 1) or 1), bits)


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
        try:
            pixels = _display(ds)
        except (RuntimeError, NotImplementedError) as e:  # no decoder takes these samples
            syntax = DECODABLE.get(str(ds.file_meta.TransferSyntaxUID), "its transfer syntax")
            why = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()] or [str(e)]
            raise DicomRefusedError("unsupported", f"{syntax}: {why[0]}") from None
    attributes = {ours: _printable(ds.get(keyword, "")) for ours, keyword in ATTRIBUTES.items()}
    attributes = {k: v for k, v in attributes.items() if v}
    if keep_identity:
        return DicomImage(pixels, attributes, data)
    if str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES":
        raise DicomRefusedError(
            "identifying",
            "its pixels carry burned-in annotation (BurnedInAnnotation = YES): no edit of its "
            "attributes can take the patient's identity out (dicom.keep_identity keeps it)",
        )
    with _refusing("de-identify the DICOM file"):
        kept = deidentify(ds)
    return DicomImage(pixels, attributes, kept)


def _display(ds: Any) -> np.ndarray:
    """Stored values to what a viewer shows, in [0, 1]: modality LUT, then the VOI LUT or the
    window (its first one), then MONOCHROME1 inverted. A file with neither takes its own
    range, the extremes of a few pixels cut."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

    arr = ds.pixel_array
    photometric = str(ds.PhotometricInterpretation)
    if photometric in COLOUR:
        if photometric != "RGB":
            arr = convert_color_space(arr, photometric, "RGB")
        top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        return np.clip(np.asarray(arr, np.float32) / max(top, 1.0), 0, 1)
    values = np.asarray(apply_modality_lut(arr, ds), np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        out = window(values, _first(ds.WindowCenter), _first(ds.WindowWidth), ds)
    elif "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        out = np.asarray(apply_voi_lut(values, ds, prefer_lut=True), np.float64)
        out = out / float(2 ** int(lut.LUTDescriptor[2]) - 1)
    else:
        low, high = (float(v) for v in np.percentile(values, (0.1, 99.9)))
        out = (values - low) / max(high - low, 1e-9)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return 1.0 - out if photometric == "MONOCHROME1" else out


def window(values: np.ndarray, center: float, width: float, ds: Any) -> np.ndarray:
    """PS3.3 C.11.2.1.2-3: LINEAR (the default), LINEAR_EXACT or SIGMOID, onto [0, 1]."""
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / max(width, 1e-9)))
    if function == "LINEAR_EXACT":
        return (values - center) / max(width, 1e-9) + 0.5
    return (values - (center - 0.5)) / max(width - 1.0, 1e-9) + 0.5


def _first(value: Any) -> float:
    """A multi-valued window's first center or width."""
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, MultiValue) else value)


def _printable(value: Any) -> str:
    text = str(value or "").strip()
    text = "".join(c for c in text if c.isprintable())
    return text[:MAX_ATTRIBUTE_CHARS]


def deidentify(ds: Any) -> bytes:
    """The dataset without the patient's identity (the Basic Profile's attributes above), as
    the bytes of a Part 10 file."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds.remove_private_tags()
    for keyword in REMOVED:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in EMPTIED:
        if keyword in ds:
            ds.data_element(keyword).value = ""
    for keyword in REPLACED_UIDS:
        if keyword in ds:
            setattr(ds, keyword, derived_uid(str(ds.data_element(keyword).value)))
    for tag in [e.tag for e in ds if 0x6000 <= e.tag.group <= 0x60FF]:  # overlays, curves
        del ds[tag]
    if "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "S3E: DICOM PS3.15 Basic Application Confidentiality Profile"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def derived_uid(uid: str) -> str:
    """A new UID that is the same for the same original: `2.25.` and 128 bits of its hash."""
    digest = hashlib.sha256(f"s3e-deid:{uid}".encode()).digest()[:16]
    return UID_ROOT + str(int.from_bytes(digest, "big"))
