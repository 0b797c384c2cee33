"""DICOM in, through the real decode path (`edge.ingest.imaging.decode`) on Part 10 files written
here from arrays of our own: the pixels come out as a viewer shows them, each display checked
against the display computed in the test from PS3.3 (modality LUT, VOI LUT or window with its
function, MONOCHROME1 inverted, the file's own range without either) at 8, 12 and 16 bits,
signed and unsigned, 12 to 16 bits kept as floats; colour as RGB; every transfer syntax
claimed decodable read the same as the uncompressed file (lossless) or within a stated
tolerance (lossy); what is not read is refused with its reason; the attributes a user filters
on are extracted; and the file kept is de-identified as PS3.15's Basic Profile says, or kept as
received when identity is kept."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space
from pydicom.uid import MPEG2MPML, UID, RTPlanStorage
from support import dicom_files as df
from support.dicom_files import IDENTITY, OVERLAY_LABEL, PRIVATE_VALUE, UIDS

from edge.ingest import deidentify, dicom
from edge.ingest.imaging import ImageRejectedError, decode

LIMIT = 50_000_000


def shown(data: bytes, keep_identity: bool = False) -> np.ndarray:
    """What the decoder shows of a greyscale DICOM, on [0, 1] (float: an F image / 255)."""
    got = decode(data, LIMIT, keep_identity=keep_identity)
    assert got.format == "DICOM" and got.image.mode == "F"
    return np.asarray(got.image, np.float64) / 255.0


def refusal(data: bytes, keep_identity: bool = False) -> ImageRejectedError:
    with pytest.raises(ImageRejectedError) as e:
        decode(data, LIMIT, keep_identity=keep_identity)
    return e.value


def linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, the LINEAR window, onto [0, 1]."""
    low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    inside = ((x - (c - 0.5)) / (w - 1)) + 0.5
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, inside))


def linear_exact(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.2, LINEAR_EXACT."""
    return np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 1.0, (x - c) / w + 0.5))


def sigmoid(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.1, SIGMOID."""
    return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))


def stored_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def dtype_for(bits: int, signed: bool) -> Any:
    return {(8, False): np.uint8, (8, True): np.int8}.get(
        (bits, signed), np.int16 if signed else np.uint16
    )


def smooth_rgb(rows: int = 48, cols: int = 64) -> np.ndarray:
    """Colour that compresses well: ramps of red and green, blue against them."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    red, green = xx * 255 // (cols - 1), yy * 255 // (rows - 1)
    return np.stack([red, green, 255 - (red + green) // 2], -1).astype(np.uint8)


# ---- the display: stored values to what a viewer shows ----


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("bits", [8, 12, 16])
def test_a_window_shows_the_stored_values_at_every_depth_and_sign(bits: int, signed: bool):
    low, high = stored_range(bits, signed)
    stored = df.gradient(8, 256, low, high, dtype_for(bits, signed))
    c, w = (low + high) / 2, (high - low) / 2
    data = df.write(stored, bits_stored=bits, WindowCenter=c, WindowWidth=w)
    np.testing.assert_allclose(shown(data), linear(stored.astype(float), c, w), atol=1e-5)


def test_monochrome1_shows_high_values_dark():
    stored = df.gradient(8, 256, 0, 4095, np.uint16)
    data = df.write(
        stored, photometric="MONOCHROME1", bits_stored=12, WindowCenter=2048, WindowWidth=4096
    )
    expected = 1.0 - linear(stored.astype(float), 2048, 4096)
    np.testing.assert_allclose(shown(data), expected, atol=1e-5)
    assert shown(data)[0, 0] == pytest.approx(1.0) and shown(data)[0, -1] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("slope", "intercept", "c", "w"),
    [(1.0, -1024.0, 40.0, 400.0), (0.25, -10.0, 300.0, 700.0), (2.5, 100.0, 5000.0, 9000.0)],
    ids=["ct-hounsfield", "fractional-slope", "slope-above-one"],
)
def test_the_rescale_applies_before_the_window(slope: float, intercept: float, c: float, w: float):
    stored = df.gradient(4, 512, 0, 4095, np.uint16)
    data = df.write(
        stored,
        bits_stored=12,
        RescaleSlope=slope,
        RescaleIntercept=intercept,
        WindowCenter=c,
        WindowWidth=w,
    )
    expected = linear(stored.astype(float) * slope + intercept, c, w)
    np.testing.assert_allclose(shown(data), expected, atol=1e-5)


@pytest.mark.parametrize("lut_bits", [8, 16])
def test_a_voi_lut_sequence_maps_the_stored_values(lut_bits: int):
    stored = df.gradient(4, 512, 0, 4095, np.uint16)
    first, entries, top = 100, 3000, 2**lut_bits - 1
    lut = np.round(top * np.sqrt(np.linspace(0, 1, entries))).astype(int)  # a gamma curve
    data = df.write(
        stored, bits_stored=12, VOILUTSequence=df.sequence_of(df.voi_lut(first, lut, lut_bits))
    )
    index = np.clip(stored.astype(int) - first, 0, entries - 1)
    np.testing.assert_allclose(shown(data), lut[index] / top, atol=1e-5)


@pytest.mark.parametrize(
    ("function", "expected"),
    [("LINEAR", linear), ("LINEAR_EXACT", linear_exact), ("SIGMOID", sigmoid)],
)
def test_the_voi_lut_function_shapes_the_window(function: str, expected: Any):
    stored = df.gradient(4, 1024, -1000, 3000, np.int16)
    c, w = 600.0, 1500.0
    data = df.write(stored, bits_stored=16, WindowCenter=c, WindowWidth=w, VOILUTFunction=function)
    np.testing.assert_allclose(shown(data), expected(stored.astype(float), c, w), atol=1e-5)


def test_of_several_windows_the_first_is_shown():
    stored = df.gradient(4, 512, 0, 4095, np.uint16)
    data = df.write(stored, bits_stored=12, WindowCenter=[1000, 3000], WindowWidth=[800, 200])
    np.testing.assert_allclose(shown(data), linear(stored.astype(float), 1000, 800), atol=1e-5)


def test_without_a_window_the_image_takes_its_own_range():
    stored = np.full((100, 64), 300, np.uint16)
    stored[90:] = 3800
    stored[10:90] = df.gradient(80, 64, 300, 3800, np.uint16)
    data = df.write(stored, bits_stored=12)
    np.testing.assert_allclose(shown(data), (stored - 300.0) / 3500.0, atol=1e-5)


def test_an_empty_window_is_no_window():
    """Window Center and Width present but empty (zero length): the own range, not a refusal."""
    stored = np.full((100, 64), 300, np.uint16)
    stored[50:] = 3800
    data = df.write(stored, bits_stored=12, WindowCenter=None, WindowWidth=None)
    np.testing.assert_allclose(shown(data), (stored - 300.0) / 3500.0, atol=1e-5)


@pytest.mark.parametrize("fault", ["not a number", "zero width"])
def test_a_window_no_viewer_could_use_is_no_window(fault: str):
    """A center that is not a number (written over the value's bytes) or a width under 1: the
    own range, as a viewer would show it, not a refusal."""
    stored = np.full((100, 64), 300, np.uint16)
    stored[50:] = 3800
    width = 0 if fault == "zero width" else 1500
    data = df.write(stored, bits_stored=12, WindowCenter=1234.5, WindowWidth=width)
    if fault == "not a number":
        assert data.count(b"1234.5") == 1
        data = data.replace(b"1234.5", b"AUTO  ")
    np.testing.assert_allclose(shown(data), (stored - 300.0) / 3500.0, atol=1e-5)


@pytest.mark.parametrize("bits", [12, 16])
def test_stored_values_one_apart_stay_apart(bits: int):
    top = 2**bits - 1
    stored = np.full((16, 16), top // 2, np.uint16)
    stored[:, 8:] += 1
    data = df.write(stored, bits_stored=bits, WindowCenter=(top + 1) / 2, WindowWidth=top + 1)
    got = shown(data)
    step = 1.0 / top
    assert got[0, 8] - got[0, 0] == pytest.approx(step, rel=1e-3)


# ---- colour ----


def test_rgb_is_shown_as_stored():
    rgb = smooth_rgb()
    got = decode(df.write(rgb), LIMIT)
    assert got.image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(got.image), rgb)


def test_ybr_full_is_shown_as_the_rgb_it_encodes():
    rgb = smooth_rgb()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    got = np.asarray(decode(df.write(ybr, photometric="YBR_FULL"), LIMIT).image, np.int64)
    assert np.abs(got - rgb).max() <= 2  # YCbCr in 8 bits rounds


# ---- transfer syntaxes: each as the same image uncompressed ----


SAMPLES = {
    8: lambda: df.chest_phantom(128, bits=8),
    12: lambda: df.chest_phantom(128, bits=12),
    16: lambda: df.chest_phantom(128, bits=16),
}
LOSSLESS = [
    (UID(syntax), bits)
    for syntax in (*df.NATIVE, *df.LOSSLESS)
    if syntax != df.ExplicitVRLittleEndian  # the reference itself
    for bits in (8, 12, 16)
    if not (syntax == df.JPEG2000Lossless and bits == 12)  # Pillow writes 8 or 16 bits
]


def window_for(bits: int) -> dict[str, float]:
    return {"WindowCenter": 2 ** (bits - 1), "WindowWidth": 2**bits}


@pytest.mark.parametrize(("syntax", "bits"), LOSSLESS, ids=[f"{s.name}-{b}" for s, b in LOSSLESS])
def test_a_lossless_syntax_reads_as_the_uncompressed_file(syntax: UID, bits: int):
    stored = SAMPLES[bits]()
    plain = df.write(stored, bits_stored=bits, **window_for(bits))
    packed = df.write(stored, syntax, bits_stored=bits, **window_for(bits))
    assert dcmread(io.BytesIO(packed)).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(shown(packed), shown(plain))


LOSSY = {
    "jpeg-baseline-8": (df.JPEGBaseline8Bit, 8, 4.0, 24),  # Pillow, quality 90
    "jpeg-extended-8": (df.JPEGExtended12Bit, 8, 1.0, 4),  # GDCM's default quality
    "jpeg-2000-8": (df.JPEG2000, 8, 8.0, 48),  # Pillow, 20:1
    "jpeg-2000-16": (df.JPEG2000, 16, 8.0, 48),
}
"""Syntax, bits, and the tolerance against the uncompressed image: mean and largest absolute
difference in grey levels (of 255) as shown."""


@pytest.mark.parametrize(("syntax", "bits", "mean", "most"), LOSSY.values(), ids=list(LOSSY))
def test_a_lossy_syntax_reads_close_to_the_uncompressed_file(
    syntax: str, bits: int, mean: float, most: float
):
    stored = SAMPLES[bits]()
    plain = shown(df.write(stored, bits_stored=bits, **window_for(bits)))
    packed = df.write(stored, syntax, bits_stored=bits, **window_for(bits))
    assert dcmread(io.BytesIO(packed)).file_meta.TransferSyntaxUID == syntax
    diff = np.abs(shown(packed) - plain) * 255
    assert diff.mean() < mean and diff.max() < most, (diff.mean(), diff.max())


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_jpeg_ls_near_lossless_stays_within_its_near_value(bits: int):
    stored = SAMPLES[bits]()
    plain = shown(df.write(stored, bits_stored=bits, **window_for(bits)))
    packed = df.write(stored, df.JPEGLSNearLossless, bits_stored=bits, **window_for(bits))
    diff = np.abs(shown(packed) - plain)
    assert diff.max() <= df.NEAR / (2**bits - 1) + 1e-6


@pytest.mark.parametrize(
    "syntax", [df.RLELossless, df.JPEG2000Lossless, df.JPEGLSLossless, df.JPEGLossless]
)
def test_a_lossless_colour_syntax_reads_as_the_rgb(syntax: str):
    rgb = smooth_rgb()
    got = decode(df.write(rgb, syntax), LIMIT)
    assert got.image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(got.image), rgb)


def test_colour_jpeg_2000_with_its_colour_transform_reads_as_the_rgb():
    """YBR_RCT: what PS3.5 8.2.4 has a colour JPEG 2000 say when the encoder used its MCT."""
    rgb = smooth_rgb()
    data = df.write(rgb, df.JPEG2000Lossless, mct=True)
    assert dcmread(io.BytesIO(data)).PhotometricInterpretation == "YBR_RCT"
    np.testing.assert_array_equal(np.asarray(decode(data, LIMIT).image), rgb)


def test_colour_jpeg_baseline_reads_close_to_the_rgb():
    """JPEG Baseline colour is YCbCr (YBR_FULL_422): shown as the RGB it encodes."""
    rgb = smooth_rgb()
    data = df.write(rgb, df.JPEGBaseline8Bit)
    assert dcmread(io.BytesIO(data)).PhotometricInterpretation == "YBR_FULL_422"
    got = np.asarray(decode(data, LIMIT).image, np.int64)
    diff = np.abs(got - rgb)
    assert diff.mean() < 2 and diff.max() < 24, (diff.mean(), diff.max())


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ],
)
def test_pydicoms_encodings_of_one_image_read_alike(name: str):
    """pydicom's test files, other writers' encodings of MR_small.dcm."""
    reference = shown(Path(get_testdata_file("MR_small.dcm")).read_bytes())
    np.testing.assert_array_equal(shown(Path(get_testdata_file(name)).read_bytes()), reference)


def test_every_syntax_claimed_decodable_is_written_and_read_here():
    written = {str(s) for s in (*df.NATIVE, *df.LOSSLESS, *df.LOSSY)}
    assert set(dicom.DECODABLE) == written


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (lambda: df.declaring(MPEG2MPML), "MPEG2 Main Profile / Main Level"),
        (lambda: Path(get_testdata_file("JPGExtended.dcm")).read_bytes(), "JPEG Extended"),
        (
            lambda: df.write(df.chest_phantom(64, bits=12), df.JPEGExtended12Bit, bits_stored=12),
            "JPEG Extended",
        ),
    ],
    ids=["mpeg2", "12-bit-jpeg-extended-pydicom", "12-bit-jpeg-extended-ours"],
)
def test_a_syntax_not_decoded_is_refused_by_name(data: Any, named: str):
    e = refusal(data())
    assert e.kind == "unsupported" and named in e.reason


# ---- what else is read, refused, or extracted ----


def test_a_preamble_that_is_a_tiff_header_is_read_as_dicom():
    stored = df.gradient(32, 64, 0, 4095, np.uint16)
    plain = df.write(
        stored, photometric="MONOCHROME1", bits_stored=12, WindowCenter=2048, WindowWidth=4096
    )
    both = df.tiff_preamble(plain)
    assert Image.open(io.BytesIO(both)).format == "TIFF"  # a real TIFF too
    got = decode(both, LIMIT)
    assert got.format == "DICOM" and got.ext == "dcm"
    np.testing.assert_array_equal(np.asarray(got.image), np.asarray(decode(plain, LIMIT).image))


def test_a_multi_frame_image_is_refused():
    e = refusal(df.multi_frame(3))
    assert e.kind == "multi_frame" and "3 frames" in e.reason


def test_an_object_with_no_image_is_refused_with_its_class():
    e = refusal(Path(get_testdata_file("rtplan.dcm")).read_bytes())
    assert e.kind == "not_an_image" and RTPlanStorage.name in e.reason


def test_rows_and_columns_over_the_limits_are_refused_before_decoding():
    ds = df.image(np.zeros((4, 4), np.uint16), bits_stored=12)
    ds.Rows = ds.Columns = 30000
    e = refusal(df._save(ds, b""))
    assert e.kind == "too_large" and "30000x30000" in e.reason


def test_the_attributes_a_user_filters_on_are_extracted():
    got = decode(df.write(df.chest_phantom(64, bits=12), bits_stored=12), LIMIT)
    assert got.attributes == {
        "modality": "DX",
        "body_part": "CHEST",
        "view_position": "PA",
        "study_date": IDENTITY["StudyDate"],
        "manufacturer": "S3E Phantoms",
    }
    assert (got.width, got.height) == (64, 64)


def test_an_attribute_is_printable_and_bounded():
    data = df.write(np.zeros((8, 8), np.uint8), Manufacturer="Acme\x1b[31m " + "x" * 100)
    assert decode(data, LIMIT).attributes["manufacturer"] == ("Acme[31m " + "x" * 100)[:64]


@pytest.mark.parametrize(
    "breakage",
    ["unknown-vr", "bad-length", "empty-voi-lut", "short-lut-descriptor"],
)
def test_a_broken_element_is_a_refusal_not_an_error(breakage: str):
    """pydicom converts an element when it is first read: whatever it raises then is a
    refusal with a reason, not an exception out of the decoder (a 500, a traceback)."""
    stored = df.chest_phantom(32, bits=12)
    if breakage == "unknown-vr":  # Modality's VR "CS" flipped to one that does not exist
        data = df.write(stored, bits_stored=12).replace(
            b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00QQ"
        )
    elif breakage == "bad-length":  # Manufacturer (12 bytes) said to be FD: 8 bytes a value
        data = df.write(stored, bits_stored=12).replace(
            b"\x08\x00\x70\x00LO", b"\x08\x00\x70\x00FD"
        )
    elif breakage == "empty-voi-lut":
        data = df.write(stored, bits_stored=12, VOILUTSequence=df.sequence_of())
    else:
        item = Dataset()
        item.LUTDescriptor, item.LUTData = [16], [0] * 16
        item["LUTDescriptor"].VR = item["LUTData"].VR = "US"
        data = df.write(stored, bits_stored=12, VOILUTSequence=df.sequence_of(item))
    for keep in (False, True):
        try:
            got = decode(data, LIMIT, keep_identity=keep)
        except ImageRejectedError as e:
            assert e.kind and e.reason
        else:
            assert got.format == "DICOM"


MEMORY_CASES = {
    "native-16": lambda g: df.write(g, bits_stored=12, RescaleIntercept=-1024.0),
    "rle-16": lambda g: df.write(g, df.RLELossless, bits_stored=12),
    "jpeg-ls-16": lambda g: df.write(g, df.JPEGLSLossless, bits_stored=12),
    "voi-lut-16": lambda g: df.write(
        g, bits_stored=12, VOILUTSequence=df.sequence_of(df.voi_lut(0, np.arange(4096) // 16, 8))
    ),
    "native-8": lambda g: df.write((g // 16).astype(np.uint8)),
    "rgb-jpeg": lambda g: df.write(
        np.stack([(g // 16).astype(np.uint8)] * 3, -1), df.JPEGBaseline8Bit
    ),
}


@pytest.mark.parametrize("case", list(MEMORY_CASES))
def test_decoding_stays_within_the_memory_the_budget_reserves(case: str):
    """The decode budget reserves `header().pixel_bytes` for a DICOM: what decoding it takes
    at its peak (numpy's and pydicom's allocations, traced) is no more."""
    data = MEMORY_CASES[case](df.gradient(1000, 1000, 0, 4095, np.uint16))
    reserved = dicom.header(data).pixel_bytes
    tracemalloc.start()
    try:
        decode(data, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= reserved, f"peak {peak >> 20} MB over the {reserved >> 20} MB reserved"


# ---- de-identification ----


def identified(**kw: Any) -> bytes:
    return df.write(df.chest_phantom(64, bits=12), bits_stored=12, private=True, overlay=True, **kw)


def kept(data: bytes, keep_identity: bool = False) -> bytes:
    got = decode(data, LIMIT, keep_identity=keep_identity)
    assert got.kept is not None
    return got.kept


def test_the_kept_file_holds_none_of_the_identity():
    out = kept(identified())
    secrets = [*IDENTITY.values(), "QUIXOTE", PRIVATE_VALUE, df.PRIVATE_CREATOR, OVERLAY_LABEL]
    assert [s for s in secrets if s.encode() in out] == []
    ds = dcmread(io.BytesIO(out))
    assert not [e for e in ds if e.tag.is_private or 0x6000 <= e.tag.group <= 0x60FF]


def test_the_kept_file_says_it_was_deidentified():
    ds = dcmread(io.BytesIO(kept(identified())))
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.PatientName == "" and ds.PatientID == "" and "InstitutionName" not in ds


def test_uids_are_replaced_the_same_way_for_the_same_file():
    first, again = (dcmread(io.BytesIO(kept(identified()))) for _ in range(2))
    for keyword, original in UIDS.items():
        assert first[keyword].value != original and first[keyword].value.startswith("2.25.")
        assert first[keyword].value == again[keyword].value
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert UIDS["SOPInstanceUID"].encode() not in kept(identified())


def test_the_kept_file_shows_the_same_pixels():
    data = identified(WindowCenter=2048, WindowWidth=4096)
    np.testing.assert_array_equal(shown(kept(data)), shown(data))


def test_with_identity_kept_the_file_is_kept_as_received():
    data = identified()
    assert kept(data, keep_identity=True) == data


def test_burned_in_annotation_is_refused():
    e = refusal(identified(BurnedInAnnotation="YES"))
    assert e.kind == "identifying" and "burned-in" in e.reason


def test_burned_in_annotation_is_read_when_identity_is_kept():
    data = identified(BurnedInAnnotation="YES")
    assert kept(data, keep_identity=True) == data


def test_identity_in_sequences_is_taken_out_wherever_it_is():
    """PS3.15 E.1.1: the profile's attributes are protected "whether contained in the main
    dataset or embedded in an Item of a Sequence of Items"; references to other instances
    are replaced too."""
    former = Dataset()  # what a PACS keeps when it coerces the patient's identity
    former.PatientID, former.PatientName = "OLD-PID-55120", "QUIXANO^ALONSO"
    original = Dataset()
    original.ModifiedAttributesSequence = df.sequence_of(former)
    original.SourceOfPreviousValues = "Hospital Rocinante del Toboso"
    operator = Dataset()
    operator.InstitutionName = "Operators Guild of La Mancha"
    anatomy = Dataset()  # a kept sequence, its item carrying what the profile removes
    anatomy.CodeValue, anatomy.CodingSchemeDesignator, anatomy.CodeMeaning = (
        "T-D3000",
        "SRT",
        "Chest",
    )
    anatomy.InstitutionName = "Nested Institution of El Toboso"
    reference = Dataset()
    reference.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    reference.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.999"
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = (
        "121311",
        "DCM",
        "Localizer",
    )
    reference.PurposeOfReferenceCodeSequence = df.sequence_of(purpose)
    out = kept(
        identified(
            OriginalAttributesSequence=df.sequence_of(original),
            OperatorIdentificationSequence=df.sequence_of(operator),
            AnatomicRegionSequence=df.sequence_of(anatomy),
            ReferencedInstanceSequence=df.sequence_of(reference),
            PlacerOrderNumberImagingServiceRequest="PLACER-7781",
            RequestedProcedureID="RPID-4410",
            MedicalAlerts="Allergic to windmills",
        )
    )
    for secret in (
        "OLD-PID-55120",
        "QUIXANO",
        "Operators Guild",
        "Nested Institution",
        "PLACER-7781",
        "RPID-4410",
        "windmills",
        "1.2.826.0.1.3680043.8.498.999",
    ):
        assert secret.encode() not in out, secret
    ds = dcmread(io.BytesIO(out))
    assert ds.AnatomicRegionSequence[0].CodeMeaning == "Chest"  # the rest is kept


def test_the_preamble_and_file_meta_are_not_kept():
    """PS3.15 E.1.1 item 7: the preamble and the file meta information of a de-identified file
    describe the de-identifier, not the sender."""
    ds = df.image(df.chest_phantom(32, bits=12), bits_stored=12)
    ds.file_meta.SourceApplicationEntityTitle = "TOBOSO_PACS"
    data = df.part10(ds, preamble=b"QUIXOTE^ALONSO exported by TOBOSO_PACS")
    out = kept(data)
    assert out[:128] == bytes(128) and b"TOBOSO_PACS" not in out and b"QUIXOTE" not in out


def test_curves_are_removed():
    ds = df.image(df.chest_phantom(32, bits=12), bits_stored=12)
    ds.add_new(0x50000022, "LO", "CURVE-SECRET-7002")  # Curve Description (retired)
    assert b"CURVE-SECRET-7002" not in kept(df.part10(ds))


def test_every_attribute_the_profile_lists_is_a_dicom_keyword():
    """A misspelt keyword would be silently skipped (`keyword in ds` is then False)."""
    for keyword in (*deidentify.REMOVED, *deidentify.EMPTIED, *deidentify.REPLACED_UIDS):
        assert tag_for_keyword(keyword) is not None, keyword
    for keyword in getattr(dicom, "DUMMIED", ()):
        assert tag_for_keyword(keyword) is not None, keyword
