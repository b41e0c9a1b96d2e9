"""Apply a Plan to one dataset: every element, in every sequence, at any depth.

Pure: no I/O. The dataset passed in is changed in place and returned in the result (copying a
whole object first would double the cost of every file).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from indexer import __version__
from indexer.deid import pseudonym
from indexer.deid.actions import ACTIONS, Context
from indexer.deid.profile import Plan
from indexer.deid.table import OPTION_CODES, PROFILE_CODE, Action, Option, table_edition
from indexer.errors import DeidError

# The dicom-index implementation class UID: 2.25 form of a fixed name (PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = UID(pseudonym.uid(b"dicom-index", "implementation class"))
IMPLEMENTATION_VERSION = f"DICOMINDEX{__version__.replace('.', '')}"[:16]
PREAMBLE = b"\x00" * 128

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
ACCESSION_NUMBER = 0x00080050
STUDY_ID = 0x00200010

# Top-level identifiers that get keyed pseudonyms instead of empty or dummy values, so the
# index can group by them and the vault can map them back: tag -> (kind, maximum length).
IDENTITY_TAGS = {
    PATIENT_ID: ("patient_id", 64),
    PATIENT_NAME: ("patient_name", 64),
    ACCESSION_NUMBER: ("accession_number", 16),
    STUDY_ID: ("study_id", 16),
}
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True, slots=True)
class Identity:
    """One original value and the pseudonym that replaced it (goes to the vault, encrypted)."""

    kind: str
    pseudonym: str
    original: str


@dataclass(frozen=True, slots=True)
class DeidResult:
    """The de-identified dataset and the originals it no longer holds."""

    ds: Dataset
    identities: tuple[Identity, ...]
    patient_pseudonym: str


def _text(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword)
    return "" if v is None else str(v).strip()


def apply(
    plan: Plan,
    ds: Dataset,
    pseudonym_key: bytes,
    *,
    id_prefix: str = "DI",
    max_shift_days: int = 3650,
) -> DeidResult:
    """De-identify ``ds`` by ``plan``; returns the new dataset and the identity map.

    Raises
    ------
    DeidError
        The object lacks a UID it needs, or holds values that cannot be decoded.

    """
    try:
        originals = {
            kw: _text(ds, kw)
            for kw in (*REQUIRED_UIDS, "PatientID", "PatientName", "AccessionNumber", "StudyID")
        }
    except (ValueError, TypeError, LookupError) as e:
        raise DeidError(
            f"cannot decode identifying attributes ({type(e).__name__})", reason="undecodable"
        ) from None
    for kw in REQUIRED_UIDS:
        if not originals[kw]:
            raise DeidError(f"missing {kw}", reason="missing_uid")
    # an object without PatientID is its own patient, keyed by its study
    patient_key = originals["PatientID"] or f"study:{originals['StudyInstanceUID']}"
    patient_pseudo = pseudonym.ident(pseudonym_key, "patient_id", patient_key, id_prefix, 64)
    ctx = Context(
        pseudonym_key, pseudonym.date_offset_days(pseudonym_key, patient_key, max_shift_days)
    )
    identities: list[Identity] = []
    try:
        _identity_elements(ds, plan, ctx, originals, patient_pseudo, id_prefix, identities)
        _walk(ds, plan, ctx, top=True)
    except (ValueError, TypeError, LookupError, OverflowError) as e:
        raise DeidError(
            f"cannot de-identify an element ({type(e).__name__})", reason="invalid_element"
        ) from None
    for kind, kw in (
        ("study_uid", "StudyInstanceUID"),
        ("series_uid", "SeriesInstanceUID"),
        ("sop_uid", "SOPInstanceUID"),
    ):
        if kw in ds and str(ds[kw].value) != originals[kw]:
            identities.append(Identity(kind, str(ds[kw].value), originals[kw]))
    _mark(ds, plan)
    _file_meta(ds)
    return DeidResult(ds, tuple(identities), patient_pseudo)


def _identity_elements(
    ds: Dataset,
    plan: Plan,
    ctx: Context,
    originals: dict[str, str],
    patient_pseudo: str,
    prefix: str,
    out: list[Identity],
) -> None:
    for tag, (kind, max_len) in IDENTITY_TAGS.items():
        if tag not in ds:
            continue
        action = plan.decide(tag, ds[tag].VR).action
        if action in (Action.KEEP, Action.REMOVE):
            continue  # the walk applies it
        keyword = ds[tag].keyword
        original = originals[keyword]
        if kind in ("patient_id", "patient_name"):
            new = patient_pseudo
        elif kind == "study_id":
            new = pseudonym.ident(
                ctx.pseudonym_key, kind, originals["StudyInstanceUID"], prefix, max_len
            )
        elif original:
            new = pseudonym.ident(ctx.pseudonym_key, kind, original, prefix, max_len)
        else:
            new = ""
        ds[tag] = DataElement(tag, ds[tag].VR, new)
        if original:
            out.append(Identity(kind, new, original))


def _vr(raw: Any, tag: int) -> str:  # noqa: ANN401
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    return str(vr).split(" or ")[0]


def _walk(ds: Dataset, plan: Plan, ctx: Context, *, top: bool) -> None:
    for tag in list(ds.keys()):
        if (
            top
            and tag in IDENTITY_TAGS
            and plan.decide(tag, "").action not in (Action.KEEP, Action.REMOVE)
        ):
            continue  # already replaced by its pseudonym
        raw = ds.get_item(tag)
        vr = _vr(raw, tag)
        action = plan.decide(tag, vr).action
        if action is Action.REMOVE:
            del ds[tag]
            continue
        if vr == "SQ":
            if action is Action.ZERO:
                ds[tag] = DataElement(tag, "SQ", Sequence([]))
                continue
            for item in ds[tag].value or ():  # K, D, U, C: every item is de-identified too
                _walk(item, plan, ctx, top=False)
            continue
        if action is Action.KEEP:
            continue
        elem = ds[tag]
        ds[tag] = DataElement(tag, vr, ACTIONS[action](vr, elem.value, ctx))


def _mark(ds: Dataset, plan: Plan) -> None:
    """Record what was done (PS3.15 E.1.1, CID 7050)."""
    codes = [PROFILE_CODE] + [OPTION_CODES[o] for o in sorted(plan.options)]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [f"dicom-index {__version__}", _edition_short()]
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if Option.RETAIN_LONG_MODIFIED_DATES in plan.options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    elif Option.RETAIN_LONG_FULL_DATES in plan.options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def _edition_short() -> str:
    edition = table_edition()
    year = next((w for w in edition.replace("'", " ").split() if w.startswith("20")), "")
    return f"PS3.15 E.1-1 {year}".strip()[:64]


def _file_meta(ds: Dataset) -> None:
    """New file meta: only what PS3.10 7.1 needs; no source AE title, no private information."""
    old = getattr(ds, "file_meta", None)
    ts = old.get("TransferSyntaxUID") if old is not None else None
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(str(ds.get("SOPClassUID", "")))
    meta.MediaStorageSOPInstanceUID = UID(str(ds.SOPInstanceUID))
    if ts:
        meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    ds.preamble = PREAMBLE


def uid_values(ds: Dataset) -> Seq[str]:
    """Every UI value in ``ds`` at any depth (for tests and the leak check)."""
    out: list[str] = []
    for elem in ds.iterall():
        if elem.VR == "UI" and elem.value:
            vals = elem.value if isinstance(elem.value, list) else [elem.value]
            out.extend(str(v) for v in vals)
    return out
