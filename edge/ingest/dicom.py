"""DICOM in: a radiograph as a hospital stores it, read as a radiologist's viewer shows it, and
kept without the patient's identity.

A Part 10 file (`DICM` at byte 128, whatever its preamble holds: some are TIFF files too) is
read with pydicom. The header is read first, so an object that is not a single image, a
transfer syntax this device cannot decode, or rows x columns over the limits is refused with a
reason before any pixel is decoded. The pixels then go through what the file says a viewer
does: the modality LUT (rescale slope and intercept), the VOI LUT or window, MONOCHROME1
inverted, and stay floating point (12 to 16 bits of them) until the model's preprocessing.

The file kept is de-identified unless the config keeps identity, as the standard's Basic
Application Level Confidentiality Profile (PS3.15 Annex E, Table E.1-1) says, wherever an
attribute is (in the dataset or in an item of a sequence, at any depth): its attributes are
removed, emptied or given a dummy value, its UIDs replaced by ones derived from them (the same
file gives the same result), private attributes, curves and overlays go, the preamble and the
file meta information are the de-identifier's, and the file says it was de-identified. An image
whose pixels carry burned-in annotation is refused unless identity is kept: no attribute edit
can clean its pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
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


def _keywords(text: str) -> tuple[str, ...]:
    return tuple(text.split())


REMOVED = _keywords(
    """
    AcquisitionComments AcquisitionContextSequence AcquisitionDate AcquisitionDateTime
    AcquisitionDeviceProcessingDescription AcquisitionProtocolDescription AcquisitionTime
    ActualHumanPerformersSequence AdditionalPatientHistory AddressTrial AdmissionID
    AdmittingDate AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription AdmittingTime
    AffectedSOPInstanceUID Allergies Arbitrary AuthorObserverSequence BarcodeValue
    BeamDescription BolusDescription BranchOfService CameraOwnerName CassetteID
    ClinicalTrialProtocolEthicsCommitteeApprovalNumber ClinicalTrialSeriesDescription
    ClinicalTrialSeriesID ClinicalTrialTimePointDescription
    CommentsOnThePerformedProcedureStep CompensatorDescription
    ConfidentialityConstraintOnPatientDataDescription
    ConsultingPhysicianIdentificationSequence ContainerComponentID ContainerDescription
    ContentCreatorIdentificationCodeSequence ContentSequence ContributionDescription
    CountryOfResidence CurrentObserverTrial CurrentPatientLocation CurveDate CurveTime
    CustodialOrganizationSequence DataSetTrailingPadding DecompositionDescription
    DerivationDescription DetectorID DeviceDescription DeviceSerialNumber
    DeviceSettingDescription DigitalSignaturesSequence DischargeDiagnosisDescription
    DistributionAddress DistributionName DoseReferenceDescription EndAcquisitionDateTime
    EntityDescription EntityName EquipmentFrameOfReferenceDescription EthnicGroup
    ExpectedCompletionDateTime FirstTreatmentDate FixationDeviceDescription
    FlowIdentifierSequence FractionGroupDescription FrameComments GPSAltitude GPSAltitudeRef
    GPSAreaInformation GPSDOP GPSDateStamp GPSDestBearing GPSDestBearingRef GPSDestDistance
    GPSDestDistanceRef GPSDestLatitude GPSDestLatitudeRef GPSDestLongitude
    GPSDestLongitudeRef GPSDifferential GPSImgDirection GPSImgDirectionRef GPSLatitude
    GPSLatitudeRef GPSLongitude GPSLongitudeRef GPSMapDatum GPSMeasureMode
    GPSProcessingMethod GPSSatellites GPSSpeed GPSSpeedRef GPSStatus GPSTimeStamp GPSTrack
    GPSTrackRef GPSVersionID GantryID GeneratorID GraphicAnnotationSequence
    HumanPerformerName HumanPerformerOrganization IconImageSequence IdentifyingComments
    ImageComments ImagePresentationComments ImagingServiceRequestComments Impressions
    InstanceCoercionDateTime InstanceCreationDate InstanceCreationTime InstanceOriginStatus
    InstitutionAddress InstitutionCodeSequence InstitutionName InstitutionalDepartmentName
    InstitutionalDepartmentTypeCodeSequence InsurancePlanIdentification IntendedPhaseEndDate
    IntendedPhaseStartDate IntendedRecipientsOfResultsIdentificationSequence
    InterpretationApproverSequence InterpretationAuthor InterpretationDiagnosisDescription
    InterpretationIDIssuer InterpretationRecorder InterpretationText
    InterpretationTranscriber IssuerOfAdmissionID IssuerOfAdmissionIDSequence
    IssuerOfPatientID IssuerOfServiceEpisodeID IssuerOfServiceEpisodeIDSequence LabelText
    LastMenstrualDate LensMake LensModel LensSerialNumber LensSpecification
    LongDeviceDescription MAC MakerNote MedicalAlerts MedicalRecordLocator MilitaryRank
    ModifiedAttributesSequence ModifiedImageDescription ModifyingDeviceID
    MostRecentTreatmentDate MultienergyAcquisitionDescription NameOfPhysiciansReadingStudy
    NamesOfIntendedRecipientsOfResults ObservationDateTrial ObservationTimeTrial Occupation
    OperatorIdentificationSequence OperatorsName OrderCallbackPhoneNumber
    OrderCallbackTelecomInformation OrderEnteredBy OrderEntererLocation
    OriginalAttributesSequence OtherPatientIDs OtherPatientIDsSequence OtherPatientNames
    OverlayDate OverlayTime ParticipantSequence PatientAddress PatientAge PatientBirthName
    PatientBirthTime PatientComments PatientInstitutionResidence
    PatientInsurancePlanCodeSequence PatientMotherBirthName
    PatientPrimaryLanguageCodeSequence PatientPrimaryLanguageModifierCodeSequence
    PatientReligiousPreference PatientSexNeutered PatientSize PatientState
    PatientTelecomInformation PatientTelephoneNumbers PatientTransportArrangements
    PatientWeight PerformedLocation PerformedProcedureStepDescription
    PerformedProcedureStepEndDate PerformedProcedureStepEndDateTime
    PerformedProcedureStepEndTime PerformedProcedureStepID PerformedProcedureStepStartDate
    PerformedProcedureStepStartDateTime PerformedProcedureStepStartTime
    PerformedStationAETitle PerformedStationGeographicLocationCodeSequence
    PerformedStationName PerformedStationNameCodeSequence
    PerformingPhysicianIdentificationSequence PerformingPhysicianName PersonAddress
    PersonIdentificationCodeSequence PersonTelecomInformation PersonTelephoneNumbers
    PhysicianApprovingInterpretation PhysiciansOfRecord
    PhysiciansOfRecordIdentificationSequence PhysiciansReadingStudyIdentificationSequence
    PlateID PreMedication PregnancyStatus PrescriptionDescription
    PriorTreatmentDoseDescription ProcedureStepCancellationDateTime ProtocolName RTPlanDate
    RTPlanDescription RTPlanName RTPlanTime RTTreatmentApproachLabel
    ReasonForOmissionDescription ReasonForRequestedProcedureCodeSequence ReasonForStudy
    ReasonForTheImagingServiceRequest ReasonForTheRequestedProcedure ReasonForVisit
    ReasonForVisitCodeSequence ReferencedDigitalSignatureSequence ReferencedImageSequence
    ReferencedPatientAliasSequence ReferencedPatientPhotoSequence ReferencedPatientSequence
    ReferencedPerformedProcedureStepSequence ReferencedSOPInstanceMACSequence
    ReferencedStudySequence ReferringPhysicianAddress
    ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers
    RegionOfResidence RequestAttributesSequence RequestedContrastAgent
    RequestedProcedureComments RequestedProcedureDescription RequestedProcedureID
    RequestedProcedureLocation RequestingPhysician RequestingService
    RespiratoryMotionCompensationTechniqueDescription ResponsibleOrganization
    ResponsiblePerson ResultsComments ResultsDistributionListSequence ResultsIDIssuer
    ReviewerName ScheduledHumanPerformersSequence ScheduledPatientInstitutionResidence
    ScheduledPerformingPhysicianIdentificationSequence ScheduledPerformingPhysicianName
    ScheduledProcedureStepDescription ScheduledProcedureStepEndDate
    ScheduledProcedureStepEndTime ScheduledProcedureStepExpirationDateTime
    ScheduledProcedureStepLocation ScheduledProcedureStepModificationDateTime
    ScheduledProcedureStepStartDate ScheduledProcedureStepStartDateTime
    ScheduledProcedureStepStartTime ScheduledStationAETitle
    ScheduledStationGeographicLocationCodeSequence ScheduledStationName
    ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
    SeriesDate SeriesDescription SeriesTime ServiceEpisodeDescription ServiceEpisodeID
    SetupTechniqueDescription ShieldingDeviceDescription SlideIdentifier SmokingStatus
    SourceImageSequence SourceManufacturer SourceSerialNumber SpecialNeeds
    SpecimenAccessionNumber SpecimenDetailedDescription SpecimenShortDescription
    StartAcquisitionDateTime StationName StudyComments StudyDescription StudyIDIssuer
    TelephoneNumberTrial TextComments TextString TimezoneOffsetFromUTC TopicAuthor
    TopicKeywords TopicSubject TopicTitle TreatmentDate TreatmentMachineName TreatmentTime
    UDISequence UniqueDeviceIdentifier VerbalSourceIdentifierCodeSequenceTrial
    VerbalSourceTrial VerifyingObserverSequence VisitComments XRayDetectorLabel
"""
)
"""Removed: PS3.15 Table E.1-1 (its 2020 edition), action X; also X/Z, X/D, X/Z/D and X/Z/U*
("X unless Z or D is needed for the object to stay valid": removed here, the stricter choice),
the sequences it gives a dummy value (D), and InstanceCreationDate and -Time."""

EMPTIED = _keywords(
    """
    AccessionNumber ClinicalTrialCoordinatingCenterName ClinicalTrialProtocolName
    ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialTimePointID
    ConceptualVolumeCombinationDescription ConceptualVolumeDescription
    ConsultingPhysicianName ContentCreatorName ContentDate ContentTime ContrastBolusAgent
    DeviceAlternateIdentifier FillerOrderNumberImagingServiceRequest FractionationNotes
    IssuerOfTheContainerIdentifierSequence IssuerOfTheSpecimenIdentifierSequence
    ManufacturerDeviceIdentifier PatientBirthDate PatientID PatientName PatientSex
    PlacerOrderNumberImagingServiceRequest PrescriptionNotes PrescriptionNotesSequence
    RTAccessoryDeviceSlotID RTAccessoryHolderSlotID RTPhysicianIntentNarrative
    RadiationGenerationModeDescription ReasonForSuperseding ReferringPhysicianName
    SpecimenPreparationSequence StudyDate StudyID StudyTime TreatmentTechniqueNotes
    VerifyingObserverIdentificationCodeSequence
"""
)
"""Kept but emptied (action Z, Z/D: the attribute may be required, its value is not)."""

DUMMIED = _keywords(
    """
    ClinicalTrialProtocolEthicsCommitteeName ClinicalTrialProtocolID
    ClinicalTrialSponsorName ClinicalTrialSubjectID ClinicalTrialSubjectReadingID
    ContainerIdentifier DeviceLabel EntityLabel EntityLongLabel FlowIdentifier
    FrameOriginTimestamp ImpedanceMeasurementDateTime InterlockDateTime InterlockDescription
    InterlockOriginDescription OverrideDateTime PersonName RTPlanLabel RTPrescriptionLabel
    RTToleranceSetLabel RadiationDoseIdentificationLabel RadiationDoseInVivoMeasurementLabel
    RadiationGenerationModeLabel RecordedRTControlPointDateTime SourceEndDateTime
    SourceIdentifier SourceStartDateTime SpecimenIdentifier TreatmentPositionGroupLabel
    TreatmentSite TreatmentToleranceViolationDateTime TreatmentToleranceViolationDescription
    UserContentLabel UserContentLongLabel VerifyingObserverName VerifyingOrganization
    XRayDetectorID XRaySourceID
"""
)
"""Given a dummy value (action D, not a sequence): `DUMMY` by the attribute's VR."""

REPLACED_UIDS = _keywords(
    """
    ConcatenationUID ConceptualVolumeUID ConstituentConceptualVolumeUID DeviceUID
    DigitalSignatureUID DimensionOrganizationUID DoseReferenceUID DosimetricObjectiveUID
    FailedSOPInstanceUIDList FiducialUID FrameOfReferenceUID InstanceCreatorUID
    IrradiationEventUID LargePaletteColorLookupTableUID ManufacturerDeviceClassUID
    MediaStorageSOPInstanceUID MultiplexGroupUID ObservationSubjectUIDTrial ObservationUID
    PaletteColorLookupTableUID PatientSetupUID PresentationDisplayCollectionUID
    PresentationSequenceCollectionUID RTTreatmentPhaseUID ReferencedConceptualVolumeUID
    ReferencedDoseReferenceUID ReferencedDosimetricObjectiveUID ReferencedFiducialsUID
    ReferencedFrameOfReferenceUID
    ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
    ReferencedObservationUIDTrial ReferencedSOPInstanceUID ReferencedSOPInstanceUIDInFile
    RelatedFrameOfReferenceUID RequestedSOPInstanceUID SOPInstanceUID SeriesInstanceUID
    SourceConceptualVolumeUID SpecimenUID StorageMediaFileSetUID StudyInstanceUID
    SynchronizationFrameOfReferenceUID TargetUID TemplateExtensionCreatorUID
    TemplateExtensionOrganizationUID TrackingUID TransactionUID TreatmentPositionGroupUID
    TreatmentSessionUID UID
"""
)
"""Replaced by a UID derived from the original (action U), wherever they are."""
DUMMY = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "PN": "ANONYMOUS",
    "OB": b"\x00\x00",
}
"""A dummy value by VR; any other text VR gets `DUMMY_TEXT`."""
DUMMY_TEXT = "ANONYMIZED"
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


def _quiet_pydicom() -> None:
    """pydicom checks each value it converts against its VR and warns of one that fails,
    quoting it (a UID with a leading zero): that would put the patient's identity in the log.
    The check is not needed here: a value that cannot be read refuses the file."""
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
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center not in (None, "") and width not in (None, ""):
        out = window(values, _first(center), _first(width), ds)
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


def _first(value: Any) -> float:
    """A multi-valued window's first center or width."""
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, MultiValue) else value)


def _printable(value: Any) -> str:
    text = str(value or "").strip()
    text = "".join(c for c in text if c.isprintable())
    return text[:MAX_ATTRIBUTE_CHARS]


_ACTIONS: dict[str, str] = {
    **dict.fromkeys(REMOVED, "X"),
    **dict.fromkeys(EMPTIED, "Z"),
    **dict.fromkeys(DUMMIED, "D"),
    **dict.fromkeys(REPLACED_UIDS, "U"),
}


def deidentify(ds: Any) -> bytes:
    """The dataset without the patient's identity (the Basic Profile, everywhere in it), as
    the bytes of a Part 10 file whose preamble and file meta information are ours."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID

    _clean(ds)
    old = ds.file_meta
    sop_class = ds.get("SOPClassUID") or old.get("MediaStorageSOPClassUID", "")
    sop = ds.get("SOPInstanceUID") or derived_uid(str(old.get("MediaStorageSOPInstanceUID", "")))
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = old.TransferSyntaxUID
    meta.MediaStorageSOPClassUID = UID(str(sop_class))
    meta.MediaStorageSOPInstanceUID = UID(str(sop))
    meta.SourceApplicationEntityTitle = "S3E"
    ds.file_meta = meta
    ds.preamble = bytes(DICM_OFFSET)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "S3E: DICOM PS3.15 Basic Application Confidentiality Profile"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _clean(ds: Any) -> None:
    """The profile's actions on one dataset and, through its sequences, on every item in it.
    Private attributes, curves (50xx) and overlays (60xx) go whole."""
    for elem in list(ds):
        tag = elem.tag
        if tag.is_private or 0x5000 <= tag.group <= 0x50FF or 0x6000 <= tag.group <= 0x60FF:
            del ds[tag]
            continue
        action = _ACTIONS.get(elem.keyword)
        if action == "X":
            del ds[tag]
        elif action == "Z":
            elem.value = [] if elem.VR == "SQ" else ""
        elif action == "D":
            elem.value = DUMMY.get(elem.VR, DUMMY_TEXT)
        elif action == "U" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [derived_uid(str(v)) for v in values]
            elem.value = new if elem.VM > 1 else new[0]
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item)


def derived_uid(uid: str) -> str:
    """A new UID that is the same for the same original: `2.25.` and 128 bits of its hash."""
    digest = hashlib.sha256(f"s3e-deid:{uid}".encode()).digest()[:16]
    return UID_ROOT + str(int.from_bytes(digest, "big"))
