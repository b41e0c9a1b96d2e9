"""De-identified Dataset -> index rows (key attributes as columns, full header as JSON)."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from indexer.records import IndexRecord

BULK_THRESHOLD = 1024  # bytes: larger binary values stay in the copy, referenced by URI


def _s(ds: Dataset, keyword: str) -> str | None:
    v = ds.get(keyword)
    if v is None:
        return None
    text = str(v).strip()
    return text or None


def _i(ds: Dataset, keyword: str) -> int | None:
    v = ds.get(keyword)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def header_json(ds: Dataset, copy_name: str) -> dict[str, Any]:
    """The DICOM JSON model (PS3.18 F.2) of ``ds``; bulk data become URIs into the copy."""

    def bulk(elem: DataElement) -> str:
        return f"{copy_name}#{elem.tag:08X}"

    return ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=bulk)


def index_record(
    ds: Dataset, *, copy_name: str, sha256: str, size: int, source_id: str, run_id: int
) -> IndexRecord:
    """Rows for patient, study, series and instance from a de-identified dataset."""
    patient_id = _s(ds, "PatientID") or ""
    study_uid = str(ds.StudyInstanceUID)
    series_uid = str(ds.SeriesInstanceUID)
    meta = getattr(ds, "file_meta", None)
    return IndexRecord(
        patient={
            "patient_id": patient_id,
            "patient_name": _s(ds, "PatientName"),
            "patient_sex": _s(ds, "PatientSex"),
            "patient_birth_date": _s(ds, "PatientBirthDate"),
            "patient_age": _s(ds, "PatientAge"),
        },
        study={
            "study_uid": study_uid,
            "patient_id": patient_id,
            "study_date": _s(ds, "StudyDate"),
            "study_time": _s(ds, "StudyTime"),
            "accession_number": _s(ds, "AccessionNumber"),
            "study_id": _s(ds, "StudyID"),
            "study_description": _s(ds, "StudyDescription"),
        },
        series={
            "series_uid": series_uid,
            "study_uid": study_uid,
            "modality": _s(ds, "Modality"),
            "series_number": _i(ds, "SeriesNumber"),
            "series_description": _s(ds, "SeriesDescription"),
            "body_part_examined": _s(ds, "BodyPartExamined"),
        },
        instance={
            "sop_uid": str(ds.SOPInstanceUID),
            "series_uid": series_uid,
            "study_uid": study_uid,
            "patient_id": patient_id,
            "sop_class_uid": _s(ds, "SOPClassUID"),
            "instance_number": _i(ds, "InstanceNumber"),
            "transfer_syntax_uid": (
                str(meta.TransferSyntaxUID)
                if meta is not None and "TransferSyntaxUID" in meta
                else None
            ),
            "rows": _i(ds, "Rows"),
            "columns": _i(ds, "Columns"),
            "number_of_frames": _i(ds, "NumberOfFrames"),
            "copy_path": copy_name,
            "copy_sha256": sha256,
            "copy_bytes": size,
            "source_id": source_id,
            "run_id": run_id,
            "header": header_json(ds, copy_name),
        },
    )
