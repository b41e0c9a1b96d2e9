"""Synthetic DICOM objects and archives with planted PHI, for the quick start and the tests.

Every identifying value carries a marker string, so a test can search every output byte for
it. Nothing here is real patient data.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# A fixed root so generated archives are the same on every run (2.25 form of "sample").
SAMPLE_ROOT = "1.2.826.0.1.3680043.10.1399."
DEFAULT_MARKER = "PHIMARK"


def _uid(*parts: object) -> str:
    return generate_uid(prefix=SAMPLE_ROOT, entropy_srcs=[str(p) for p in parts])


@dataclass(frozen=True, slots=True)
class SampleShape:
    """How many of each level a generated archive has."""

    patients: int = 2
    studies: int = 2
    series: int = 2
    instances: int = 3


def make_instance(  # noqa: PLR0915 - one statement per planted element
    patient: int = 1,
    study: int = 1,
    series: int = 1,
    instance: int = 1,
    *,
    marker: str = DEFAULT_MARKER,
    rows: int = 16,
    columns: int = 16,
    **elements: Any,  # noqa: ANN401 - any element value
) -> Dataset:
    """One CT image with PHI (each value holding ``marker``) at top level, nested and private."""
    m = f"{marker}{patient}"
    study_uid = _uid("study", patient, study)
    series_uid = _uid("series", patient, study, series)
    sop_uid = _uid("sop", patient, study, series, instance)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    month = (study - 1) % 12 + 1
    ds.StudyDate = f"2023{month:02d}15"
    ds.SeriesDate = f"2023{month:02d}15"
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"ACC{m}{study}"[:16]
    ds.Modality = "CT"
    ds.Manufacturer = "SyntheticCo"
    ds.InstitutionName = f"General Hospital {m}"
    ds.ReferringPhysicianName = f"Referrer^{m}"
    ds.OperatorsName = f"Operator^{m}"
    ds.StudyDescription = f"CT chest for {m}"
    ds.SeriesDescription = f"axial {m}"
    ds.PatientName = f"Doe^{m}^Q"
    ds.PatientID = f"MRN-{m}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F" if patient % 2 else "M"
    ds.PatientAge = "053Y"
    ds.OtherPatientIDs = f"OTHER-{m}"
    ds.PatientComments = f"lives at 1 Main St {m}"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"S{m}"[:16]
    ds.SeriesNumber = series
    ds.InstanceNumber = instance
    ds.FrameOfReferenceUID = _uid("for", patient, study)
    ds.ImagePositionPatient = [0.0, 0.0, float(instance)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = "1.0"

    # a kept (unlisted) sequence whose items hold identifying values: must be cleaned inside
    region = Dataset()
    region.CodeValue = "T-D3000"
    region.CodingSchemeDesignator = "SRT"
    region.CodeMeaning = "Chest"
    region.ReferringPhysicianName = f"Nested^{m}"
    inner = Dataset()
    inner.PersonName = f"Deeper^{m}"
    inner.InstitutionName = f"Deep Hospital {m}"
    region.ContentSequence = Sequence([inner])
    ds.AnatomicRegionSequence = Sequence([region])

    # a cross-file reference: every instance after the first points at the first of its series
    if instance > 1:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = _uid("sop", patient, study, series, 1)
        ds.ReferencedImageSequence = Sequence([ref])

    # a private block with identifying values
    block = ds.private_block(0x0009, "SYNTHETIC PHI", create=True)
    block.add_new(0x01, "LO", f"private name {m}")
    block.add_new(0x02, "UI", _uid("private", patient))

    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    # 12 bits stored of 16: each sample's high byte (little endian) holds 4 of them
    ds.PixelData = bytes(
        (i * 7 + instance) % (256 if i % 2 == 0 else 16) for i in range(rows * columns * 2)
    )

    for keyword, value in elements.items():
        setattr(ds, keyword, value)

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = f"AE{patient}"
    ds.preamble = (f"preamble {m} ".encode() * 16)[:128]
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Encode ``ds`` as a DICOM file (preamble, file meta, explicit VR little endian)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def iter_archive(shape: SampleShape, marker: str = DEFAULT_MARKER) -> Iterator[tuple[str, bytes]]:
    """(relative path, file bytes) for each object of a synthetic archive.

    Paths contain the patient's name, as real exports often do: they must never reach outputs.
    """
    for p in range(1, shape.patients + 1):
        for st in range(1, shape.studies + 1):
            for se in range(1, shape.series + 1):
                for i in range(1, shape.instances + 1):
                    ds = make_instance(p, st, se, i, marker=marker)
                    yield f"Doe_{marker}{p}/study{st}/series{se}/img{i:04d}.dcm", to_bytes(ds)


def write_archive(
    out: Path, shape: SampleShape | None = None, *, marker: str = DEFAULT_MARKER
) -> int:
    """Write a synthetic archive as a folder, or as a zip if ``out`` ends in .zip."""
    shape = shape or SampleShape()
    n = 0
    if out.suffix == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in iter_archive(shape, marker):
                z.writestr(name, data)
                n += 1
        return n
    for name, data in iter_archive(shape, marker):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        n += 1
    return n
