"""The DICOM standard's Basic Application Level Confidentiality Profile (PS3.15 Annex E,
Table E.1-1), as the device applies it to a file it keeps: each attribute the profile names is
removed (X), emptied (Z), given a dummy value (D) or has its UID replaced (U), wherever it is
(in the dataset or in an item of a sequence, at any depth); private attributes, curves and
overlays go whole; the preamble and the file meta information are the de-identifier's; and
the file says it was de-identified. Where the profile allows a choice (X/Z, X/D, X/Z/U*...),
the stricter one is taken. The same file always gives the same result: replaced UIDs derive
from the originals, so a study's images still belong together.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

PREAMBLE = bytes(128)
"""The de-identified file's preamble: nothing of the sender's (it may be a TIFF header, or
hold a name)."""


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
    ds.preamble = PREAMBLE
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
