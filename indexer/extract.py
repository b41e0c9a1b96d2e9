"""De-identified Dataset -> index rows (key attributes as columns, full header as JSON)."""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag

from indexer.deid import rawvalue
from indexer.deid.rawvalue import DEFAULT, NUMBER_VRS, text_of, value_of
from indexer.encode import UNDEFINED_LENGTH, held
from indexer.records import IndexRecord
from indexer.spans import Span

BULK_THRESHOLD = 1024  # bytes: larger binary values stay in the copy, referenced by URI
_INLINE_LIMIT = (BULK_THRESHOLD // 4) * 3  # pydicom's test: base64 length over the threshold
# Numbers and text may be bulk data too (PS3.18 F.2.6). Values this long are data, not
# metadata to query by (an RT structure set's contour points, a frame time vector): they
# stay in the copy, so an index document stays small (MongoDB takes at most 16 MiB).
VALUE_BULK_THRESHOLD = 4096  # bytes of the value as stored
VALUE_BULK_VRS = frozenset(
    {"DS", "FD", "FL", "IS", "LT", "SL", "SS", "ST", "SV", "UC", "UL", "UR", "US", "UT", "UV"}
)
# What the index's integer columns (PostgreSQL ``integer``) hold: an IS value past them (no
# IS the standard allows) leaves its column empty; the header holds it.
COLUMN_INTEGERS = (-(2**31), 2**31 - 1)
# What a number in a header may be: JSON has no NaN or infinity, and MongoDB (its documents
# read from the index's JSON) holds integers of 64 bits at most (a UV past 2^63 - 1).
JSON_INTEGERS = (-(2**63), 2**63 - 1)


def _s(ds: Dataset, keyword: str, codec: str | None = None) -> str | None:
    tag = tag_for_keyword(keyword)
    return (text_of(ds, tag, codec) or None) if tag is not None else None


def _i(ds: Dataset, keyword: str, codec: str | None = None) -> int | None:
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return None
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement) and raw.VR == "IS" and isinstance(raw.value, bytes):
        text = raw.value.decode("latin-1")
        if _IS.fullmatch(text.rstrip("\x00")):  # one plain integer: read here, no element
            return _in_column(int(text.rstrip("\x00")))
        # empty, several values, "1.0", ...: as pydicom reads them
    try:
        v = value_of(ds, tag, codec)
        return None if v is None or v == "" else _in_column(int(v))
    except (TypeError, ValueError, OverflowError):  # ("1e400": pydicom's IS of infinity)
        return None


def _in_column(n: int) -> int | None:
    return n if COLUMN_INTEGERS[0] <= n <= COLUMN_INTEGERS[1] else None


def header_json(ds: Dataset, copy_name: str) -> dict[str, Any]:
    """The DICOM JSON model (PS3.18 F.2) of ``ds``; bulk data become URIs into the copy.

    What pydicom's ``to_json_dict`` gives (tests compare the two): ``header_json_text``, read.
    """
    return json.loads(header_json_text(ds, copy_name))  # type: ignore[no-any-return]


def header_json_text(ds: Dataset, copy_name: str) -> str:
    """``header_json`` as compact JSON text (what the index stores), one fragment per element.

    Built from the elements' bytes where ``rawvalue`` can decode them, by pydicom elsewhere.
    Most elements of an object repeat in the next (a series' slices share all but a few
    values), so fragments of small raw values are kept, keyed by tag, VR, bytes and
    character set: the next object's are looked up, not decoded and encoded again.
    """
    return _json_text(ds, copy_name, rawvalue.codec(ds))


def _json_text(ds: Dataset, copy_name: str, codec: str | None) -> str:
    parts = []
    for tag, stored in list(ds._dict.items()):  # noqa: SLF001 - the Dataset's own order
        if isinstance(stored, rawvalue.Marking) and isinstance(stored.value, bytes):
            text = _marking_text(tag.real, stored.VR, stored.value, codec, stored.is_implicit_VR)
        else:
            try:
                text = _element_text(ds, tag, stored, copy_name, codec)
            except BytesLengthException:  # its text quotes the bytes: told by tag and length
                raise rawvalue.unfit_length(tag.real, stored) from None
        parts.append(f'"{tag:08X}":{text}')
    return "{" + ",".join(parts) + "}"


def _element_text(ds: Dataset, tag: int, stored: object, copy_name: str, codec: str | None) -> str:
    if isinstance(getattr(stored, "value", None), Span):  # pixel data left in its source
        if len(stored.value) > BULK_THRESHOLD:  # type: ignore[attr-defined]
            # implicit VR (no VR read): native, so OW (PS3.5 A.1), as pydicom settles it
            vr = stored.VR or "OW"  # type: ignore[attr-defined]
            return _ENCODER.encode({"vr": vr, "BulkDataURI": f"{copy_name}#{tag:08X}"})
        # small (never in practice: spans start at STREAM_FROM): inline, as if read whole
        stored = ds._dict[tag] = held(stored)  # type: ignore[arg-type, index]  # noqa: SLF001
    if _long_value(stored):
        return _ENCODER.encode({"vr": stored.VR, "BulkDataURI": f"{copy_name}#{tag:08X}"})  # type: ignore[attr-defined]
    raw = ds[tag] if isinstance(stored, RawDataElement) and stored.value is None else stored
    text = _raw_fragment(raw, copy_name, codec) if codec is not None else None
    if text is None and raw.VR == "SQ" and not isinstance(raw, RawDataElement):  # type: ignore[attr-defined]
        items = ",".join(
            _json_text(item, copy_name, _item_codec(item, codec))
            for item in raw.value  # type: ignore[attr-defined]
        )
        text = f'{{"vr":"SQ","Value":[{items}]}}'
    if text is None:
        try:
            doc = ds[tag].to_json_dict(
                bulk_data_element_handler=lambda e: f"{copy_name}#{e.tag:08X}",
                bulk_data_threshold=BULK_THRESHOLD,
            )
        except _VALUE_ERRORS:  # a value that is none of its VR's; an unknown VR still fails
            doc = _as_unknown(tag, ds.get_item(tag), copy_name, ds)
        text = _encoded(doc)
        if text is None:  # a number no header holds (NaN, infinity, past 64 bits): as bytes
            text = _ENCODER.encode(_as_unknown(tag, ds.get_item(tag), copy_name, ds))
    return text


def _encoded(doc: dict[str, Any]) -> str | None:
    """``doc`` as JSON text; None where it holds a number that no header holds.

    Not finite (JSON has no NaN or infinity: PostgreSQL refused the batch), or an integer
    past ``JSON_INTEGERS`` (MongoDB refused the documents).
    """
    if doc.get("vr") in NUMBER_VRS and not all(map(_holdable, doc.get("Value", ()))):
        return None
    return _ENCODER.encode(doc)


def _holdable(number: object) -> bool:
    if isinstance(number, float):
        return math.isfinite(number)
    return not isinstance(number, int) or JSON_INTEGERS[0] <= number <= JSON_INTEGERS[1]


_VALUE_ERRORS = (ValueError, TypeError, OverflowError)


def _long_value(stored: object) -> bool:
    """Whether a stored element is a number or text value given as bulk data (by its size)."""
    return (
        isinstance(stored, RawDataElement)
        and stored.VR in VALUE_BULK_VRS
        and isinstance(stored.value, bytes | memoryview)
        and len(stored.value) > VALUE_BULK_THRESHOLD
    )


def _as_unknown(tag: int, stored: object, copy_name: str, ds: Dataset) -> dict[str, Any]:
    """An element the JSON model cannot give as it is: its bytes, as UN (PS3.18 F.2.7).

    A number that is none ("N/A" as a Series Number, "1,5" as a Slice Thickness): the copy
    holds it as it came (or as pydicom wrote it, if it was read since), and the index does
    not refuse the object for it.
    """
    value = getattr(stored, "value", None)
    if not isinstance(value, bytes | memoryview):
        value = _written_value(stored, ds)
    if not value:
        return {"vr": "UN"}
    if len(value) > _INLINE_LIMIT:
        return {"vr": "UN", "BulkDataURI": f"{copy_name}#{tag:08X}"}
    return {"vr": "UN", "InlineBinary": base64.b64encode(bytes(value)).decode()}


@functools.lru_cache(maxsize=64)
def _marking_text(tag: int, vr: str, value: bytes, codec: str | None, implicit: bool) -> str:
    """The JSON of a marking element (the same for every copy), made once, on a copy of it."""
    key = BaseTag(tag)
    holder = Dataset()
    holder._dict[key] = rawvalue.Marking(key, vr, len(value), value, 0, implicit, True)  # noqa: SLF001, FBT003
    return _element_text(holder, key, holder.get_item(key), "", codec)


def _written_value(elem: object, ds: Dataset) -> bytes | None:
    """The value bytes pydicom writes for a converted element; None if it cannot."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True  # a head of 8 bytes, whatever the VR
    try:
        write_data_element(fp, elem, ds._character_set)  # type: ignore[arg-type]  # noqa: SLF001
    except (*rawvalue.ELEMENT_ERRORS, KeyError):
        return None
    return fp.getvalue()[8:]


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # (``_encoded``)
_KEPT_FRAGMENT = min(256, _INLINE_LIMIT)  # bytes: larger ones seldom repeat; never bulk data


def _raw_fragment(raw: object, copy_name: str, codec: str) -> str | None:
    """One raw element's JSON text, or None where ``_lean_json`` leaves it to pydicom."""
    if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED_LENGTH or not raw.VR:
        return None
    value = raw.value
    if isinstance(value, bytes | memoryview) and len(value) <= _KEPT_FRAGMENT:
        return _fragment(raw.tag.real, raw.VR, bytes(value), codec)
    doc = _lean_json(raw, copy_name, codec)
    return None if doc is None else _encoded(doc)


@functools.lru_cache(maxsize=8192)
def _fragment(tag: int, vr: str, value: bytes, codec: str) -> str | None:
    # small values: never bulk data, so the copy's name is not part of the text
    raw = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)  # noqa: FBT003
    doc = _lean_json(raw, "", codec)
    return None if doc is None else _encoded(doc)


def _item_codec(item: Dataset, codec: str | None) -> str | None:
    return None if codec is None or rawvalue.SPECIFIC_CHARACTER_SET in item else codec


_IS = re.compile(r"\s*[+-]?\d+\s*")


def _lean_json(raw: object, copy_name: str, codec: str) -> dict[str, Any] | None:  # noqa: C901
    """One raw element's JSON as pydicom gives it; None where pydicom must build it."""
    if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED_LENGTH or not raw.VR:
        return None
    vr = raw.VR
    if vr in rawvalue.BYTES_VRS:
        data = raw.value
        if not data:
            return {"vr": vr}
        if len(data) > _INLINE_LIMIT:
            return {"vr": vr, "BulkDataURI": f"{copy_name}#{raw.tag:08X}"}
        return {"vr": vr, "InlineBinary": base64.b64encode(bytes(data)).decode()}
    if vr in ("DS", "IS"):
        return _number_text_json(raw, vr)
    value = rawvalue.decode(raw, vr, codec)
    if value is rawvalue.UNDECODED:
        return None
    if value is None or value == "":
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        names = []
        for v in values:
            groups = v.split("=")
            if len(groups) > 3:  # noqa: PLR2004 - pydicom's own reading of odd names
                return None
            names.append(dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False)))
        return {"vr": vr, "Value": names}
    return {"vr": vr, "Value": values}


def _number_text_json(raw: RawDataElement, vr: str) -> dict[str, Any] | None:
    """DS and IS values as JSON numbers (pydicom's float and int), or None for odd ones."""
    try:
        text = bytes(raw.value or b"").decode("ascii").strip().rstrip(" \x00")
    except UnicodeDecodeError:
        return None
    if not text:
        return {"vr": vr}
    numbers: list[int | float] = []
    for part in text.split("\\"):
        if vr == "IS":
            if not _IS.fullmatch(part):
                return None
            numbers.append(int(part))
            continue
        try:
            number = float(part)
        except ValueError:
            return None
        if not math.isfinite(number) or not part.strip() or "_" in part:
            return None
        numbers.append(number)
    return {"vr": vr, "Value": numbers}


def index_record(
    ds: Dataset, *, copy_name: str, sha256: str, size: int, source_id: str, run_id: int
) -> IndexRecord:
    """Rows for patient, study, series and instance from a de-identified dataset."""
    codec = rawvalue.codec(ds)
    patient_id = _s(ds, "PatientID", codec) or ""
    study_uid = _s(ds, "StudyInstanceUID", codec) or ""
    series_uid = _s(ds, "SeriesInstanceUID", codec) or ""
    meta = getattr(ds, "file_meta", None)
    return IndexRecord(
        patient={
            "patient_id": patient_id,
            "patient_name": _s(ds, "PatientName", codec),
            "patient_sex": _s(ds, "PatientSex", codec),
            "patient_birth_date": _s(ds, "PatientBirthDate", codec),
            "patient_age": _s(ds, "PatientAge", codec),
        },
        study={
            "study_uid": study_uid,
            "patient_id": patient_id,
            "study_date": _s(ds, "StudyDate", codec),
            "study_time": _s(ds, "StudyTime", codec),
            "accession_number": _s(ds, "AccessionNumber", codec),
            "study_id": _s(ds, "StudyID", codec),
            "study_description": _s(ds, "StudyDescription", codec),
        },
        series={
            "series_uid": series_uid,
            "study_uid": study_uid,
            "modality": _s(ds, "Modality", codec),
            "series_number": _i(ds, "SeriesNumber", codec),
            "series_description": _s(ds, "SeriesDescription", codec),
            "body_part_examined": _s(ds, "BodyPartExamined", codec),
        },
        instance={
            "sop_uid": _s(ds, "SOPInstanceUID", codec) or "",
            "series_uid": series_uid,
            "study_uid": study_uid,
            "patient_id": patient_id,
            "sop_class_uid": _s(ds, "SOPClassUID", codec),
            "instance_number": _i(ds, "InstanceNumber", codec),
            "transfer_syntax_uid": _s(meta, "TransferSyntaxUID", DEFAULT)
            if meta is not None
            else None,
            "rows": _i(ds, "Rows", codec),
            "columns": _i(ds, "Columns", codec),
            "number_of_frames": _i(ds, "NumberOfFrames", codec),
            "copy_path": copy_name,
            "copy_sha256": sha256,
            "copy_bytes": size,
            "source_id": source_id,
            "source_digest": None,  # the source's, once its copy is written (``work.with_copy``)
            "run_id": run_id,
            # as JSON text: built once here (in the worker), copied into PostgreSQL as is
            "header": header_json_text(ds, copy_name),
        },
    )


CACHES = (_fragment,)  # what work.clear_caches empties
