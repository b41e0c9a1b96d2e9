"""Apply a Plan to one dataset: every element, in every sequence, at any depth.

Pure: no I/O. The dataset passed in is changed in place and returned in the result (copying a
whole object first would double the cost of every file).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from indexer import __version__, fastread, syntaxes
from indexer.deid import burned_in, frames, iod, pixels, pseudonym, rawvalue, values
from indexer.deid.actions import ACTIONS, BINARY_VRS, Context
from indexer.deid.profile import (
    ACCESSION_NUMBER,
    COMPOUND,
    CREATOR_FIRST,
    CREATOR_LAST,
    FRAME_TEXT,
    PATIENT_ID,
    PATIENT_NAME,
    PIXEL_EXCESS,
    PRIVATE_FIRST,
    STUDY_ID,
    TEXT_VRS,
    UNDEFINED_LENGTH,
    UNKNOWN_VR,
    UNUSED_BITS,
    Decision,
    Plan,
    damaged,
    decide,
    out_of_place,
    resolve,
)
from indexer.deid.rawvalue import (
    AS_BYTES,
    CHARSET_VRS,
    NUMBER_SIZES,
    text_of,
    undefined_length,
    value_of,
)
from indexer.deid.rawvalue import vr_of as _vr
from indexer.deid.rules import Scope, SiteRule, changes, compute
from indexer.deid.table import (
    CLEAN_PIXEL_CODE,
    OPTION_CODES,
    PROFILE_CODE,
    Action,
    Option,
    table_edition,
)
from indexer.errors import DeidError

# The dicom-index implementation class UID: 2.25 form of a fixed name (PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = UID(pseudonym.uid(b"dicom-index", "implementation class"))
IMPLEMENTATION_VERSION = f"DICOMINDEX{__version__.replace('.', '')}"[:16]
PREAMBLE = b"\x00" * 128
# site methods whose output is keyed: a value found inside one is chance (an accession
# number "1217" inside a date shifted to 2022-12-17), not a leak
KEYED_METHODS = frozenset({"cryptohash", "encrypt", "dateshift"})
META_VERSION = rawvalue.Written(BaseTag(0x00020001), "OB", 2, b"\x00\x01", 0, False, True)  # noqa: FBT003

# Top-level identifiers that get keyed pseudonyms instead of empty or dummy values, so the
# index can group by them and the vault can map them back: tag -> (kind, maximum length).
IDENTITY_TAGS = {
    PATIENT_ID: ("patient_id", 64),
    PATIENT_NAME: ("patient_name", 64),
    ACCESSION_NUMBER: ("accession_number", 16),
    STUDY_ID: ("study_id", 16),
}
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
ORIGINAL_TAGS = {  # keyword -> tag of what the identity map and the vault need
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SOPInstanceUID": 0x00080018,
    "PatientID": PATIENT_ID,
    "PatientName": PATIENT_NAME,
    "AccessionNumber": ACCESSION_NUMBER,
    "StudyID": STUDY_ID,
}
KEYWORDS = {tag: kw for kw, tag in ORIGINAL_TAGS.items()}
SOP_CLASS_UID = 0x00080016


class Mode(StrEnum):
    """How the items of a sequence are treated (PS3.15 E.1-1 action on the sequence)."""

    NORMAL = "normal"  # every element by its own row
    DUMMY = "replaced"  # D on the sequence: no free text, no dates survive inside
    CLEAN = "cleaned"  # C (Clean Structured Content): free text cleaned, codes kept


_SEQUENCE_MODE = {Action.DUMMY: Mode.DUMMY, Action.CLEAN: Mode.CLEAN}
# VRs whose kept values are replaced inside such sequences (CS, codes in SH/LO kept by C)
_MODE_VRS = {
    Mode.DUMMY: frozenset(
        {"AE", "AS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
    ),
    Mode.CLEAN: frozenset({"DA", "DT", "LT", "PN", "ST", "UC", "UT"}),
}


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
    # values derived from the key (pseudonym UIDs and IDs, keyed site methods): an original
    # value seen inside one is there by chance, not a leak (nor inside a dummy value)
    generated: frozenset[str] = frozenset()


def _put(ds: Dataset, tag: int, vr: str, value: Any, codec: str | None) -> None:  # noqa: ANN401
    """Set element ``tag`` to ``value``: as bytes written here where it can, else by pydicom."""
    if codec is not None:
        written = rawvalue.encode(tag, vr, value)
        if written is not None:
            key = tag if isinstance(tag, BaseTag) else written.tag  # the stored key, if it is one
            ds._dict[key] = written  # noqa: SLF001 - __setitem__ would decode it again
            return
    ds[tag] = DataElement(tag, vr, value)


def apply(
    plan: Plan,
    ds: Dataset,
    pseudonym_key: bytes,
    *,
    id_prefix: str = "DI",
    max_shift_days: int = 3650,
    trace: list[TraceStep] | None = None,
    found: dict[str, str] | None = None,
    lean: bool = True,
) -> DeidResult:
    """De-identify ``ds`` by ``plan``; returns the new dataset and the identity map.

    ``found``, when given, receives every identifying value the plan changes or removes
    (value -> original path), as ``values.identifying_values`` would list them before
    the change: the leak check's input, gathered in the same pass.

    With ``lean`` (the default), values of little endian objects (explicit VR; implicit VR,
    its elements given their VRs first) are read and written as bytes where ``rawvalue``
    can, without pydicom's element objects; the result is the same (tests compare the two
    ways, byte for byte, in both).

    Raises
    ------
    DeidError
        The object lacks a UID it needs, or holds values that cannot be decoded.

    """
    misplaced = out_of_place(ds)  # before anything changes it
    if lean:  # an implicit VR object's elements: their values read as bytes too
        rawvalue.give_vrs(ds)
    # before any value is read: a UID written as bytes or numbers is read as the UID it holds
    read_as = rawvalue.read_as_known(ds)
    # the elements as read, judged so by the walk: where pydicom decodes (big endian, no VR),
    # the values read before it (SOP Class UID, ...) are converted in ``ds``
    as_read = dict(ds._dict)  # noqa: SLF001 - as stored
    try:
        codec = rawvalue.codec(ds) if lean else None
        originals = {kw: text_of(ds, tag, codec) for kw, tag in ORIGINAL_TAGS.items()}
        sop_class = text_of(ds, SOP_CLASS_UID, codec)
    except rawvalue.ELEMENT_ERRORS as e:
        raise DeidError(
            f"cannot decode identifying attributes: {rawvalue.element_problem(e)}",
            reason="undecodable",
        ) from None
    for kw in REQUIRED_UIDS:
        if not originals[kw]:
            raise DeidError(f"missing {kw}", reason="missing_uid")
    if not sop_class:  # a copy must say what it is (PS3.10: Media Storage SOP Class UID)
        raise DeidError("missing SOPClassUID", reason="missing_uid")
    try:
        return _apply(
            plan,
            ds,
            pseudonym_key,
            codec,
            originals,
            id_prefix,
            max_shift_days,
            trace,
            found,
            (misplaced, read_as, as_read),
        )
    except rawvalue.ELEMENT_ERRORS as e:
        raise DeidError(
            f"cannot de-identify the object: {rawvalue.element_problem(e)}",
            reason="invalid_element",
        ) from None


def _apply(
    plan: Plan,
    ds: Dataset,
    pseudonym_key: bytes,
    codec: str | None,
    originals: dict[str, str],
    id_prefix: str,
    max_shift_days: int,
    trace: list[TraceStep] | None,
    found: dict[str, str] | None,
    # out_of_place, read_as_known, and the elements, as read
    judged: tuple[frozenset[int], frozenset[int], Mapping[BaseTag, object]],
) -> DeidResult:
    misplaced, read_as, as_read = judged
    outside = values.outside_values(ds) if found is not None else {}
    pixels_cleaned = burned_in.enforce(ds, plan.burned_in, plan.pixel_masks, codec)
    _clean_pixel_data(ds, trace)
    # an object without PatientID is its own patient, keyed by its study
    patient_key = originals["PatientID"] or f"study:{originals['StudyInstanceUID']}"
    patient_pseudo = pseudonym.ident(pseudonym_key, "patient_id", patient_key, id_prefix, 64)
    ctx = Context(
        pseudonym_key,
        pseudonym.date_offset_days(pseudonym_key, patient_key, max_shift_days),
        trace=trace,
        found=found,
        codec=codec,
        scope=Scope(
            patient_key,
            originals["StudyInstanceUID"],
            originals["SeriesInstanceUID"],
            originals["SOPInstanceUID"],
        ),
    )
    identities: list[Identity] = []
    types = iod.types_for(text_of(ds, SOP_CLASS_UID, codec))
    _identity_elements(ds, plan, ctx, originals, patient_pseudo, id_prefix, identities)
    _walk(
        ds, plan, ctx, types=types, top=True, misplaced=misplaced, read_as=read_as, as_read=as_read
    )
    for kind, kw in zip(("study_uid", "series_uid", "sop_uid"), REQUIRED_UIDS, strict=True):
        new = text_of(ds, ORIGINAL_TAGS[kw], codec)
        if not new:  # a site rule removed or emptied it: no copy name, no index row
            raise DeidError(f"de-identification left no {kw}", reason="missing_uid")
        if new != originals[kw]:
            identities.append(Identity(kind, new, originals[kw]))
    if found is not None:
        for value, path in outside.items():
            values.put(found, value, path)
    _drop_orphans(ds)
    _mark(ds, plan, codec, pixels_cleaned=pixels_cleaned)
    _file_meta(ds, codec)
    generated = ctx.generated | {i.pseudonym for i in identities} | {IMPLEMENTATION_CLASS_UID}
    return DeidResult(ds, tuple(identities), patient_pseudo, frozenset(generated))


def _clean_pixel_data(ds: Dataset, trace: list[TraceStep] | None) -> None:
    """What rides along in pixel data without being part of the image, taken out of it.

    Native pixel data past its image (what a damaged length took in), the bits of each
    sample outside its stored ones (embedded overlays), and the text in the headers of
    compressed frames. Each is one step of ``trace`` where it changed anything.
    """
    for tag, vr, dropped in pixels.cut_excess(ds):
        if trace is not None:
            trace.append(_pixel_step(tag, vr, PIXEL_EXCESS, f"{dropped} bytes"))
    cleared = pixels.clear_unused_bits(ds)  # None: as it is streamed
    blanked = frames.blank_in(ds)
    if trace is None or (cleared == 0 and blanked == 0):  # (None: as streamed)
        return
    vr = _vr(ds.get_item(pixels.PIXEL_DATA), pixels.PIXEL_DATA)
    if cleared != 0:
        told = "as the pixel data is copied" if cleared is None else f"{cleared} samples"
        trace.append(_pixel_step(pixels.PIXEL_DATA, vr, UNUSED_BITS, told))
    if blanked != 0:
        told = "as the frames are copied" if blanked is None else f"{blanked} segments"
        trace.append(_pixel_step(pixels.PIXEL_DATA, vr, FRAME_TEXT, told))


def _pixel_step(tag: int, vr: str, rule: Decision, told: str) -> TraceStep:
    return _step("", tag, vr, rule.action.value, f"{rule.source} ({told})")


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
        vr = _vr(ds.get_item(tag), tag)
        if plan.rules.match(tag, vr, None) is not None:
            continue  # a site rule decides it in the walk
        action = plan.decide(tag, vr).action
        if action in (Action.KEEP, Action.REMOVE):
            continue  # the walk applies it
        original = originals[KEYWORDS[tag]]
        if ctx.found is not None:  # recorded when the walk reaches it
            ctx.replaced[tag] = value_of(ds, tag, ctx.codec, vr)
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
        _put(ds, tag, _text_vr(tag, vr), new, ctx.codec)
        if original:
            out.append(Identity(kind, new, original))


def _text_vr(tag: int, vr: str) -> str:
    """``vr``, or the dictionary's where it holds no text a pseudonym could be written in.

    A damaged VR byte (the Patient ID's "LO" became "UL", or "SQ"): its pseudonym, text,
    failed the object (``encode_failed``, or ``invalid_element``: a sequence of no items).
    """
    return vr if vr in CHARSET_VRS else dictionary_VR(tag)


def _walk(  # noqa: C901 - one dispatch over the actions, kept in one place
    ds: Dataset,
    plan: Plan,
    ctx: Context,
    *,
    types: Mapping[int, str] | None,
    top: bool,
    parents: str = "",
    mode: Mode = Mode.NORMAL,
    misplaced: frozenset[int] = frozenset(),
    read_as: frozenset[int] = frozenset(),
    as_read: Mapping[BaseTag, object] | None = None,
) -> None:
    """Apply the plan to every element of ``ds``; ``types`` are the IOD's (top level only).

    ``misplaced``: the tags ``profile.out_of_place`` found out of the order they were read in;
    ``read_as``: those ``rawvalue.read_as_known`` gave their dictionary VR; ``as_read``: the
    elements as read, where some were converted since (their values as read are judged).
    """
    # outcomes of elements as read can be repeated from the last object that held them
    repeatable = ctx.found is not None and ctx.trace is None and ctx.codec is not None
    for key, raw in list(ds._dict.items()):  # noqa: SLF001 - elements as stored, not converted
        # the stored key for the data set (no conversion, found by identity), a plain int
        # for the tables (BaseTag compares in Python, int in C)
        tag = key.real
        vr = _vr(raw, tag)
        if undefined_length(raw, vr, tag):
            _remove_unread(ds, key, vr, ctx, parents)
            continue
        if (
            top
            and tag in IDENTITY_TAGS
            and plan.decide(tag, "").action not in (Action.KEEP, Action.REMOVE)
            and plan.rules.match(tag, vr, None) is None
        ):
            if ctx.trace is not None:
                kind = IDENTITY_TAGS[tag][0]
                ctx.trace.append(_step(parents, tag, vr, "pseudonym", f"keyed pseudonym ({kind})"))
            if ctx.found is not None:
                values.add(ctx.found, ctx.replaced.get(tag), values.tag_path(parents, tag))
            continue  # already replaced by its pseudonym
        attr_type = types.get(tag, "3") if top and types is not None else None
        decision, action, recorded, source = _choice(plan, ds, tag, vr, attr_type, mode)
        if isinstance(decision, SiteRule):  # a computing site method: redact, dateshift, ...
            _compute(ds, key, vr, decision, plan, ctx, parents)
            continue
        if (misplaced or vr in TEXT_VRS or vr in AS_BYTES or _implicit_number(raw, vr)) and (
            action in _KEPT_IN_PART  # kept, or cleaned; or kept by the profile, but a dummy
            or (recorded in _KEPT_IN_PART and action is not Action.REMOVE)  # in its sequence
        ):
            read = as_read.get(key, raw) if as_read else raw
            suspect = damaged(tag, vr, getattr(read, "value", None), misplaced, read_as)
            if suspect is not None:
                if action in _KEPT_IN_PART:
                    action, source = suspect.action, suspect.source
                # identifying, as ``values.collect`` records it
                recorded = suspect if suspect.suspect else suspect.action
        if ctx.trace is not None:
            ctx.trace.append(_step(parents, tag, vr, action.value, source))
        if (
            repeatable
            and (action not in (Action.KEEP, Action.REMOVE) or recorded is not Action.KEEP)
            and _repeat(ds, key, raw, vr, action, recorded, ctx, parents)
        ):
            continue
        # the value, decoded once, if recording or the action needs it (a number removed,
        # emptied or given a dummy needs nothing of it, nor is it recorded: a damaged one may
        # not even decode)
        value = (
            value_of(ds, key, ctx.codec, vr)
            if vr != "SQ"
            and (
                (
                    action not in (Action.KEEP, Action.REMOVE, Action.ZERO)
                    and not (action is Action.DUMMY and vr in values.NUMBER_AND_TAG_VRS)
                )
                or (ctx.found is not None and values.record_prefix(recorded, vr) is not None)
            )
            else None
        )
        if ctx.found is not None and recorded is not Action.KEEP:  # kept: nothing to record
            _record(ds, key, vr, recorded, plan, ctx.found, parents, value)
        if action is Action.REMOVE:
            del ds[key]
            continue
        if vr == "SQ":
            if action is Action.ZERO:
                ds[key] = DataElement(key, "SQ", Sequence([]))
                continue
            path = values.tag_path(parents, tag)
            inner = _SEQUENCE_MODE.get(action, mode) if mode is not Mode.DUMMY else mode
            items = fastread.sequence(ds, key) if ctx.codec is not None else ds[key].value
            for i, item in enumerate(items or ()):  # K, D, U, C: items cleaned too
                _walk_item(item, plan, ctx, f"{path}[{i}].", inner)
            continue
        if action is Action.KEEP:
            continue
        _put(ds, key, vr, ACTIONS[action](vr, value, ctx), ctx.codec)
    if plan.may_keep_private:
        _drop_empty_private_blocks(ds)


Choice = tuple[Decision | SiteRule, Action, "values.Recorded", str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the walk does to one element as read: the same for the same bytes and choice.

    The texts it records (under the path prefix), whether it removes it, the element it
    writes instead (None: kept as read) and the values derived from the key it wrote.
    """

    prefix: str
    texts: tuple[str, ...]
    remove: bool
    written: rawvalue.Written | None
    generated: tuple[str, ...]


def _implicit_number(raw: object, vr: str) -> bool:
    """Whether ``raw`` is a binary number read without its VR: by its tag (``UNFIT_NUMBER``)."""
    return vr in NUMBER_SIZES and type(raw) is RawDataElement and raw.is_implicit_VR


# Outcomes by (tag, VR, bytes, action, recorded action, character set, date offset, key):
# a series' slices repeat most values, so most elements of the next slice are looked up,
# not decoded, de-identified and encoded again. Bounded; holds originals, as the process
# does while it works on them (clear_caches empties it).
OUTCOMES: dict[tuple[object, ...], Outcome | None] = {}
OUTCOME_LIMIT = 8192
OUTCOME_VALUE_LIMIT = 1024  # bytes: longer values seldom repeat
_UNKNOWN = object()


def _repeat(
    ds: Dataset,
    key: BaseTag,
    raw: object,
    vr: str,
    action: Action,
    recorded: values.Recorded,
    ctx: Context,
    parents: str,
) -> bool:
    """Apply the outcome of element ``key`` as read, known or worked out; whether it could.

    Elements converted or written since they were read, long values, sequences and values
    ``rawvalue`` cannot decode or write are left to the walk.
    """
    if type(raw) is not RawDataElement or vr == "SQ" or ds._dict.get(key) is not raw:  # noqa: SLF001
        return False
    data = raw.value
    if type(data) is not bytes or len(data) > OUTCOME_VALUE_LIMIT:
        return False
    memo_key = (
        key.real,
        vr,
        data,
        action,
        recorded,
        ctx.codec,
        ctx.date_offset_days,
        ctx.pseudonym_key,
    )
    outcome = OUTCOMES.get(memo_key, _UNKNOWN)
    if outcome is _UNKNOWN:
        outcome = _outcome(raw, key, vr, action, recorded, ctx)
        if len(OUTCOMES) >= OUTCOME_LIMIT:
            OUTCOMES.clear()
        OUTCOMES[memo_key] = outcome
    if outcome is None:
        return False
    assert isinstance(outcome, Outcome)  # noqa: S101 - for the type checker
    if outcome.texts:
        assert ctx.found is not None  # noqa: S101 - only then repeatable
        path = outcome.prefix + values.tag_path(parents, key)
        for text in outcome.texts:
            values.put(ctx.found, text, path)
    if outcome.remove:
        del ds[key]
    elif outcome.written is not None:
        ds._dict[key] = outcome.written  # noqa: SLF001 - as _put stores it
    ctx.generated.update(outcome.generated)
    return True


def _outcome(
    raw: RawDataElement,
    key: BaseTag,
    vr: str,
    action: Action,
    recorded: values.Recorded,
    ctx: Context,
) -> Outcome | None:
    """What the walk does to ``raw``, worked out without touching the object or ``ctx``."""
    assert ctx.codec is not None  # noqa: S101 - only then repeatable
    value = rawvalue.decode(raw, vr, ctx.codec)
    if value is rawvalue.UNDECODED:
        return None
    prefix = values.record_prefix(recorded, vr, value)
    texts = (
        values.meaningful(values.recorded_value(recorded, value), vr) if prefix is not None else ()
    )
    if action in (Action.KEEP, Action.REMOVE):
        return Outcome(
            prefix or "", texts, remove=action is Action.REMOVE, written=None, generated=()
        )
    scratch = Context(ctx.pseudonym_key, ctx.date_offset_days, codec=ctx.codec)
    written = rawvalue.encode(key, vr, ACTIONS[action](vr, value, scratch))
    if written is None:
        return None  # pydicom writes it: the walk does
    return Outcome(
        prefix or "", texts, remove=False, written=written, generated=tuple(scratch.generated)
    )


BINARY_NOT_CLEANED = "binary data cannot be cleaned automatically, removed"
TIME_KEPT = "a time of day, kept as read (dates move by whole days)"
MEMO_LIMIT = 20_000  # public tags seen with a VR, type and mode: far fewer in practice


def _choice(
    plan: Plan, ds: Dataset, tag: int, vr: str, attr_type: str | None, mode: Mode
) -> Choice:
    """What the walk does with one element: decision, action, recorded action and why.

    The recorded action is the compound one resolved without the type, as
    ``values.collect`` resolves it. A function of the plan and these arguments alone (and,
    for a private element, of its creator, read from ``ds``): kept in the plan for public
    tags.
    """
    private = (tag >> 16) & 1
    memo_key = (tag, vr, attr_type, mode)
    if not private:
        known = plan.memo.get(memo_key)
        if known is not None:
            return known  # type: ignore[return-value]
    decision = decide(plan, ds, tag, vr)
    if isinstance(decision, SiteRule):
        choice: Choice = (decision, Action.KEEP, Action.KEEP, decision.source)
    elif decision is UNKNOWN_VR:  # removed unread: nothing in it can be recorded
        choice = (decision, Action.REMOVE, Action.KEEP, decision.source)
    else:
        action = decision.action
        recorded: values.Recorded = decision if decision.suspect else action
        source = decision.source
        if action in COMPOUND:
            # what values.collect decides, type unknown
            recorded = decision if decision.suspect else resolve(action, vr)
            action = resolve(action, vr, attr_type)
            source += f" {decision.action.value} -> {action.value} " + (
                f"(Type {attr_type} in the IOD)" if attr_type else "(type unknown: safe choice)"
            )
        if action is Action.KEEP and mode is not Mode.NORMAL and vr in _MODE_VRS[mode]:
            # inside a sequence the profile replaces (D) or cleans (C): free text goes too
            action = Action.DUMMY if mode is Mode.DUMMY or vr not in ("DA", "DT") else Action.CLEAN
            source = f"inside a sequence whose content is {mode.value}: {vr} replaced"
        if action is Action.CLEAN:
            action, source = _cleaned(vr, source)
        choice = (decision, action, recorded, source)
    if not private:
        if len(plan.memo) >= MEMO_LIMIT:
            plan.memo.clear()
        plan.memo[memo_key] = choice
    return choice


# What leaves a value, or part of it, as read: the walk asks whether such a value is damaged
# (``profile.damaged``). So it does where the profile would keep a value but a sequence it lies
# in is replaced (the action a dummy, the recorded one keeping it): a damaged value is
# identifying all the same, and recorded so, as ``values.collect`` records it. An element
# removed unread (an unknown VR) is never judged.
_KEPT_IN_PART = (Action.KEEP, Action.CLEAN)


def _cleaned(vr: str, source: str) -> tuple[Action, str]:
    """What clean (C) does to an element of ``vr``, and why."""
    if vr in BINARY_VRS:
        return Action.REMOVE, f"{source}: {BINARY_NOT_CLEANED}"  # bitmaps, curves
    if vr == "TM":
        # cleaning leaves it as it is: kept as read, so that the leak check knows it as kept
        # (a vendor's private copy of the Acquisition Time is no leak)
        return Action.KEEP, f"{source}: {TIME_KEPT}"
    return Action.CLEAN, source


def _walk_item(item: Dataset, plan: Plan, ctx: Context, parents: str, mode: Mode) -> None:
    """Walk a sequence item; one with a character set of its own is left to pydicom."""
    codec = ctx.codec
    if codec is not None and rawvalue.SPECIFIC_CHARACTER_SET in item:
        ctx.codec = None
    misplaced = out_of_place(item)
    if ctx.codec is not None:  # an implicit VR item's elements: read as bytes too
        rawvalue.give_vrs(item)
    read_as = rawvalue.read_as_known(item)
    try:
        _walk(
            item,
            plan,
            ctx,
            types=None,
            top=False,
            parents=parents,
            mode=mode,
            misplaced=misplaced,
            read_as=read_as,
        )
    finally:
        ctx.codec = codec


# Type 1C attributes required only if another attribute is present (PS3.3): when the profile
# removes the condition, the dependent attribute must go too, or the object becomes invalid.
CONDITIONAL_ON = {
    0x00120081: 0x00120082,  # Ethics Committee Name, if Ethics Committee Approval Number
}


def _remove_unread(ds: Dataset, key: BaseTag, vr: str, ctx: Context, parents: str) -> None:
    """Remove an element of undefined length under a VR that cannot have one, unread."""
    if ctx.trace is not None:
        ctx.trace.append(_step(parents, key.real, vr, "X", UNDEFINED_LENGTH.source))
    del ds._dict[key]  # noqa: SLF001 - as stored


def _record(
    ds: Dataset,
    tag: int,
    vr: str,
    action: values.Recorded,
    plan: Plan,
    found: dict[str, str],
    parents: str,
    value: Any,  # noqa: ANN401 - the element's value (not decoded where the action keeps it)
) -> None:
    """Record the identifying values of one element before the walk changes it."""
    if vr != "SQ":
        if action is not Action.KEEP:  # a kept element stays as read: not even decoded
            values.record(found, action, vr, value, values.tag_path(parents, tag))
    elif action in (Action.REMOVE, Action.ZERO):  # its items go unwalked: collect them
        path = values.tag_path(parents, tag)
        for i, item in enumerate(ds[tag].value or ()):
            values.collect(plan, item, f"{path}[{i}].", found)


def _drop_orphans(ds: Dataset) -> None:
    """Remove what the removal of other attributes left invalid."""
    for dependent, condition in CONDITIONAL_ON.items():
        if dependent in ds and condition not in ds:
            del ds[dependent]
    # an overlay without its data (60xx,3000) is an invalid overlay plane: drop the group
    overlays = [t for t in ds.keys() if 0x6000 <= t >> 16 < 0x6020 and not (t >> 16) & 1]  # noqa: SIM118, PLR2004
    for tag in overlays:
        if (tag & 0xFFFF0000 | 0x3000) not in ds:
            del ds[tag]


def _compute(
    ds: Dataset, tag: int, vr: str, rule: SiteRule, plan: Plan, ctx: Context, parents: str
) -> None:
    if vr == "SQ":
        raise DeidError(f"{rule.source} selected a sequence", reason="rule_mismatch")
    if ctx.trace is not None:
        ctx.trace.append(_step(parents, tag, vr, rule.method, rule.source))
    value = value_of(ds, tag, ctx.codec, vr)
    if ctx.found is not None and (changed := changes(rule, plan.rules, vr, value)) is not None:
        values.record(ctx.found, rule, vr, changed, values.tag_path(parents, tag))
    assert ctx.scope is not None  # noqa: S101 - apply() sets it
    new = compute(rule, plan.rules, vr, value, ctx.pseudonym_key, tag, ctx.scope)
    if rule.method in KEYED_METHODS:
        ctx.generated.update(v for v in (new if isinstance(new, list) else [new]) if v)
    _put(ds, tag, vr, new, ctx.codec)


def _drop_empty_private_blocks(ds: Dataset) -> None:
    """Remove private creators whose block kept no element."""
    tags = list(ds.keys())
    members = {t & 0xFFFFFF00 for t in tags if (t >> 16) & 1 and t & 0xFFFF >= PRIVATE_FIRST}
    for tag in tags:
        if (tag >> 16) & 1 and CREATOR_FIRST <= tag & 0xFFFF <= CREATOR_LAST:
            block = (tag & 0xFFFF0000) | (tag & 0xFF) << 8
            if block not in members:
                del ds[tag]


def _step(parents: str, tag: int, vr: str, action: str, source: str) -> TraceStep:
    shown = vr if vr.isascii() and vr.isprintable() else ascii(vr)[1:-1]  # a damaged VR: escaped
    return TraceStep(
        values.tag_path(parents, tag), keyword_for_tag(tag) or "", shown, action, source
    )


@dataclass(frozen=True, slots=True)
class TraceStep:
    """What happened to one element, and why (never its value)."""

    path: str
    keyword: str
    vr: str
    action: str
    source: str


def explain(plan: Plan, ds: Dataset, pseudonym_key: bytes) -> list[TraceStep]:
    """Per element, the action and what decided it (``--what-if``); ``ds`` is consumed."""
    trace: list[TraceStep] = []
    apply(plan, ds, pseudonym_key, trace=trace)
    return trace


def _mark(ds: Dataset, plan: Plan, codec: str | None, *, pixels_cleaned: bool = False) -> None:
    """Record what was done (PS3.15 E.1.1, CID 7050)."""
    if codec is None:
        for elem in mark_elements(plan.options, pixels_cleaned=pixels_cleaned):
            ds[elem.tag] = elem
        return
    implicit = ds.original_encoding[0] is True  # (a sequence's items are in the object's VR)
    for written in _mark_written(plan.options, pixels_cleaned=pixels_cleaned, implicit=implicit):
        ds._dict[written.tag] = written  # noqa: SLF001 - shared bytes, never decoded here


@functools.cache
def _mark_written(
    options: frozenset[Option], *, pixels_cleaned: bool, implicit: bool
) -> tuple[Any, ...]:
    """The marking elements as bytes: the same for every object of a run, built once."""
    marks = mark_elements(options, pixels_cleaned=pixels_cleaned)
    return tuple(rawvalue.written(e, implicit=implicit) for e in marks)


def mark_elements(options: frozenset[Option], *, pixels_cleaned: bool) -> list[DataElement]:
    """The elements every copy gets to record what was done (also in `dicom-index profile`)."""
    codes = [PROFILE_CODE] + [OPTION_CODES[o] for o in sorted(options)]
    if pixels_cleaned:
        codes.append(CLEAN_PIXEL_CODE)
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds = Dataset()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [f"dicom-index {__version__}", _edition_short()]
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if Option.RETAIN_LONG_MODIFIED_DATES in options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    elif Option.RETAIN_LONG_FULL_DATES in options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"
    return list(ds)


def _edition_short() -> str:
    edition = table_edition()
    year = next((w for w in edition.replace("'", " ").split() if w.startswith("20")), "")
    return f"PS3.15 E.1-1 {year}".strip()[:64]


# (implicit VR, little endian) as a data set was read -> its transfer syntax
_SYNTAX_OF: dict[tuple[bool | None, bool | None], UID] = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def _file_meta(ds: Dataset, codec: str | None) -> None:
    """New file meta: only what PS3.10 7.1 needs; no source AE title, no private information."""
    old = getattr(ds, "file_meta", None)
    ts = old.get("TransferSyntaxUID") if old is not None else None
    if not ts:  # a file without file meta, or without a transfer syntax in it: as read
        ts = _SYNTAX_OF.get(getattr(ds, "original_encoding", (None, None)))
    elif not isinstance(ts, str) or not syntaxes.known(ts):  # (numbers: a damaged VR)
        raise DeidError(
            "the transfer syntax UID names no transfer syntax: the copy could not say how it "
            "is encoded",
            reason="unknown_transfer_syntax",
        )
    sop_class = text_of(ds, SOP_CLASS_UID, codec)
    if not sop_class:
        raise DeidError("de-identification left no SOPClassUID", reason="missing_uid")
    meta = FileMetaDataset()
    if codec is not None:
        meta._dict[BaseTag(0x00020001)] = META_VERSION  # noqa: SLF001 - a group 2 tag
    elements = [
        (0x00020002, "UI", sop_class),
        (0x00020003, "UI", text_of(ds, ORIGINAL_TAGS["SOPInstanceUID"], codec)),
        (0x00020010, "UI", str(ts) if ts else None),
        (0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
        (0x00020013, "SH", IMPLEMENTATION_VERSION),
    ]
    for tag, vr, value in elements:
        if value is None:
            continue
        written = rawvalue.encode(tag, vr, str(value)) if codec is not None else None
        if written is not None:
            meta._dict[written.tag] = written  # noqa: SLF001 - checked group 2 tags
        else:
            meta[tag] = DataElement(tag, vr, UID(value) if vr == "UI" else value)
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
