"""The identifying values of an original: what the leak check later searches the copy for.

A value counts when the plan does not keep it unchanged (every VR, private and nested
included, file meta and preamble too). The engine records these as it de-identifies
(``apply(..., found=...)``); ``identifying_values`` collects them without changing anything
(for ``verify``, and for sequences the engine removes without walking them).
"""

from __future__ import annotations

import functools
import re
import unicodedata
import warnings
from collections.abc import Sequence
from typing import cast

from pydicom.datadict import dictionary_has_tag, keyword_for_tag, repeater_has_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from indexer.deid import rawvalue
from indexer.deid.actions import DUMMY, not_a_uid
from indexer.deid.profile import (
    UID_HOLDS_TEXT,
    Decision,
    Plan,
    damaged,
    decide,
    foreign_value,
    out_of_place,
    resolve,
    unknown_vr,
)
from indexer.deid.rawvalue import SPECIFIC_CHARACTER_SET, UNDECODED
from indexer.deid.rules import SiteRule, changes
from indexer.deid.table import Action, Option, TagPattern, load_table

MIN_LENGTH = 4  # shorter values ("M", "CT", "1") say nothing and match everywhere (``weight``)
# a value's padding, never recorded: NULs of a field written as zeros match every preamble
PADDING = " \t\n\r\x0b\x0c\x00"
MADE_UP = frozenset(v for v in DUMMY.values() if isinstance(v, str) and v)
# words that stand for no value (``placeholder``), case-folded
PLACEHOLDERS = frozenset(
    {
        "anonymised",
        "anonymized",
        "anonymous",
        "deleted",
        "none",
        "not applicable",
        "not specified",
        "null",
        "removed",
        "unknown",
        "unspecified",
    }
)
# UIDs the standard defines (transfer syntaxes, SOP classes, well-known instances) under its
# own root: they identify no one, and a copy holds them where it says what it is
STANDARD_UID_ROOT = "1.2.840.10008."
SAME_PLACE = "@"  # path prefix: a shifted date, a leak only if it survives where it was
# path prefix: a value replaced or removed as damaged (``Decision.suspect``): no leak where a
# kept attribute holds it whole
DAMAGED = "~"
META_PHI = (  # Source, Sending and Receiving Application Entity Title, Private Information
    0x00020016,
    0x00020017,
    0x00020018,
    0x00020102,
)


def tag_path(parents: str, tag: int) -> str:
    """An element's path: its parents' path, then ``(gggg,eeee)``."""
    return f"{parents}({tag >> 16:04X},{tag & 0xFFFF:04X})"


def texts(value: object, *, uid: bool = False) -> list[str]:
    """The text forms of a value: each of a multi-value, each component of a person name.

    A text holding an escape sequence its reader left in (``rawvalue.ESCAPE_SEQUENCE``)
    counts as read and with them taken out. A value holding ``^`` or ``=`` may be a person
    name (in a PN, or a name typed or moved elsewhere): each part on its own too. In a UID
    (``uid``), not a part of digits and points alone: the "1.2.999.560." of a damaged
    "1.2.999.560.=7" is no name, and lies inside a sound UID kept beside it.
    """
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [t for v in value for t in texts(v, uid=uid)]  # type: ignore[attr-defined]
    text = str(value).strip(PADDING)
    parts = [text]
    if "\x1b" in text:  # escape sequences a reader knows, and another did not: taken out too
        parts.append(rawvalue.ESCAPE_SEQUENCE.sub("", text))
    for form in parts[:]:
        if "^" in form or "=" in form:  # person names: each component on its own too
            split = form.replace("=", "^").split("^")
            parts += [p for p in split if p and (not uid or not_a_uid(p))]
    return parts


def add(found: dict[str, str], value: object, path: str, vr: str = "") -> None:
    """Record the texts of ``value`` long enough to mean something (``put``).

    A dummy value de-identification itself writes ("ANONYMIZED", "19000101") is not
    recorded: an original that already holds one (an archive de-identified before) says
    nothing, and the copy holds the same dummy wherever the profile puts one. Nor is a UID
    the standard defines (``STANDARD_UID_ROOT``), nor a value that stands for none
    (``placeholder``: "UNKNOWN", "0000000000").
    """
    for t in meaningful(value, vr):
        put(found, t, path)


def put(found: dict[str, str], text: str, path: str) -> None:
    """Record ``text`` as found at ``path``; found at two, where a leak is searched widest.

    The first path wins, unless the second's value is checked more strictly: one removed
    for what it is (the Operators' Name, searched for everywhere) over one removed for what
    it might hold (a description, a private or unknown element: not reported where a kept
    attribute holds it, ``verify._Kept``), over a shifted date (checked where it was only).
    A value kept but replaced as damaged (``DAMAGED``) is checked as a description is. Not
    the order the elements come in: a damaged file's are out of order.
    """
    old = found.setdefault(text, path)
    if old != path and _leniency(path) < _leniency(old):
        found[text] = path


def _leniency(path: str) -> int:
    """How far a value recorded at ``path`` may be found in a copy without a leak."""
    if path.startswith(SAME_PLACE):
        return 3
    kind = precaution(path)
    return 0 if kind is None else 2 if kind == "unknown" else 1


_LAST_TAG = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)$")
# Institution Name, Institutional Department Name, Station Name: at a vendor's, its own name
_SITE = frozenset({0x00080080, 0x00081040, 0x00081010})
META = "file meta "  # path prefix: an element of the file meta information
# the file meta's Source, Sending and Receiving Application Entity Titles: stations' names
_META_TITLES = frozenset({0x00020016, 0x00020017, 0x00020018})


def precaution(source: str) -> str | None:
    """Why the element at ``source`` (an original's path) went, if for what it might hold.

    "unknown" (private, or no standard attribute), "description" (or comment: ``_described``),
    "site" (the institution, department or station; an application entity title, the file
    meta's too), "damaged" (kept, but replaced as damaged); None: for what it is.
    """
    if source.startswith(DAMAGED):
        return "damaged"
    m = _LAST_TAG.search(source)
    if m is None:  # the preamble
        return None
    group, tag = int(m[1], 16), int(m[1] + m[2], 16)
    if not source.startswith(("(", SAME_PLACE + "(")):
        return "site" if source == META + m[0] and tag in _META_TITLES else None
    if group & 1 or not (dictionary_has_tag(tag) or repeater_has_tag(tag)):
        return "unknown"
    if tag in _SITE or tag in _titles():
        return "site"
    return "description" if _described(tag) else None


def _described(tag: int) -> bool:
    """Whether ``tag`` is a description or comment: free text, removed for what it may hold.

    One that a cleaning option of Table E.1-1 names (Clean Descriptors: Image Comments,
    Occupation, Protocol Name, ...; Clean Graphics: curve and overlay data and their
    companions), or whose keyword says so. Not an element for what it is (a name, an ID).
    """
    exact, groups = _cleaned()
    if tag in exact or any(g.matches(tag) for g in groups):
        return True
    return keyword_for_tag(tag).endswith(("Description", "Comments"))


@functools.cache
def _cleaned() -> tuple[frozenset[int], tuple[TagPattern, ...]]:
    """The public tags a cleaning option names: exact, and as repeating groups (50xx,xxxx)."""
    cleaned = [
        r.tag
        for r in load_table()
        if not r.tag.private
        and r.options.keys() & {Option.CLEAN_DESCRIPTORS, Option.CLEAN_GRAPHICS}
    ]
    return frozenset(t.value for t in cleaned if t.is_exact), tuple(
        t for t in cleaned if not t.is_exact
    )


@functools.cache
def _titles() -> frozenset[int]:
    """The tags of application entity titles (VR AE): the names of stations, as a vendor's."""
    return frozenset(r.tag.value for r in load_table() if r.vr == "AE" and r.tag.is_exact)


def shown(source: str) -> str:
    """``source`` as a path of the original (a leak's), its check's prefix aside."""
    return source[1:] if source.startswith((DAMAGED, SAME_PLACE)) else source


def meaningful(value: object, vr: str = "") -> tuple[str, ...]:
    """The texts of ``value`` (of ``vr``, where known) that ``add`` records."""
    return tuple(
        t
        for t in texts(value, uid=vr == "UI")
        if weight(t) >= MIN_LENGTH
        and t not in MADE_UP
        and not placeholder(t)
        and not t.startswith(STANDARD_UID_ROOT)
    )


def placeholder(text: str) -> bool:
    """Whether ``text`` stands for no value: a word that says so, or one character repeated.

    "UNKNOWN" as the Referring Physician's Name, "0000000000" as the Patient ID: no one's
    name or ID, and words a kept code holds as often (Acquisition Contrast "UNKNOWN").
    """
    return len(set(text)) == 1 or text.casefold() in PLACEHOLDERS


def weight(text: str) -> int:
    """How long ``text`` is as a name: its length, a wide character counting two.

    An ideograph, a kana or a Hangul syllable (``wide``) is a syllable or a word: two of
    them are a whole name (山田, 小明, 길동), which the length alone took for too short to
    mean anything, and no leak check searched for.
    """
    if len(text) >= MIN_LENGTH or text.isascii():
        return len(text)
    return len(text) + sum(map(wide, text))


def wide(char: str) -> bool:
    """Whether ``char`` is of a script that writes no space between words.

    East Asian wide (ideographs, kana, Hangul), or a half-width kana (JIS X 0201's, which
    old Japanese systems write names in).
    """
    return unicodedata.east_asian_width(char) in "WFH"


def record(found: dict[str, str], decision: Recorded, vr: str, value: object, path: str) -> None:
    """Record ``value`` if ``decision`` (compound actions resolved) changes or removes it."""
    prefix = record_prefix(decision, vr, value)
    if prefix is not None:
        add(found, recorded_value(decision, value), prefix + path, vr)


def recorded_value(decision: Recorded, value: object) -> object:
    """What of ``value`` ``decision`` changes: all of it, but of a UID holding text.

    There (``profile.UID_HOLDS_TEXT``), the values that are no UID: the others stay.
    """
    if decision is not UID_HOLDS_TEXT:
        return value
    many = value if isinstance(value, list | MultiValue) else [value]
    return [v for v in many if v and not_a_uid(str(v))]


# Numbers say nothing of whom an object shows: a removed Patient's Weight of "0.000000" or
# "70" is found in a gantry tilt or a slice position by chance, never as a leak.
NUMBER_AND_TAG_VRS = rawvalue.NUMBER_VRS | {"AT"}


# What records a value: the action taken on it, a computing site rule, or the decision that
# replaced or removed a value as damaged (``Decision.suspect``)
Recorded = Action | SiteRule | Decision


def record_prefix(decision: Recorded, vr: str, value: object = None) -> str | None:
    """How ``record`` marks the path of a value ``decision`` changes; None: not recorded.

    ``value`` (decoded), where given: a date, time, age or code the table's action removes or
    replaces, that is no such value (``profile.foreign_value``), is checked as damaged.
    """
    if vr in NUMBER_AND_TAG_VRS:
        return None
    if isinstance(decision, SiteRule):  # a computing site method changes the value
        return SAME_PLACE if decision.method == "dateshift" else ""
    if isinstance(decision, Decision):
        return DAMAGED if decision.suspect else ""
    if decision is Action.CLEAN and vr == "TM":
        return None  # a whole-day date shift keeps times of day: retained by design
    if decision is Action.CLEAN and vr in ("DA", "DT"):
        # a shifted date may equal another original date by chance: check it in place
        return SAME_PLACE
    if decision is not Action.KEEP:
        return DAMAGED if foreign_value(vr, value) else ""
    return None


_TOP = "top"  # ``collect``'s data set is an object, not an item: its codec is its own


def collect(
    plan: Plan, d: Dataset, parents: str, found: dict[str, str], codec: str | None = _TOP
) -> None:
    """Record every identifying value of ``d`` and its sequences, changing nothing.

    An element of an unknown VR is passed over: it cannot be read, and is removed unread.
    Public elements written as UN, OB or OW, or under a damaged VR, and private creators are
    read by their own VR first, as the engine reads them (``rawvalue.read_as_known``: the
    elements' VRs change, not their values). Text is decoded from its bytes as the engine
    decodes it (``rawvalue.decode``, with ``codec``: ``rawvalue.codec`` of the object, None
    in an item with a character set of its own), by pydicom where that cannot.
    """
    if codec == _TOP:
        codec = rawvalue.codec(d)
    elif codec is not None and SPECIFIC_CHARACTER_SET in d._dict:  # noqa: SLF001
        codec = None  # an item with a character set of its own: pydicom decodes it
    misplaced = out_of_place(d)  # before the VRs change
    if codec is not None:  # implicit VR: the elements' VRs, so their text is decoded here
        rawvalue.give_vrs(d)
    read_as = rawvalue.read_as_known(d)
    for tag in sorted(d._dict):  # noqa: SLF001 - as stored: a VR is known before converting
        raw = d._dict[tag]  # noqa: SLF001
        as_read = rawvalue.vr_of(raw, tag)  # UN stays UN here: pydicom converts it below
        if (
            unknown_vr(as_read)
            or as_read in NUMBER_AND_TAG_VRS  # numbers: not recorded
            or rawvalue.undefined_length(raw, as_read, tag)  # removed unread, as the engine does
        ):
            continue
        vr, value = _read(d, tag, raw, as_read, codec)
        path = tag_path(parents, tag)
        if vr == "SQ":
            for i, item in enumerate(cast("Sequence[Dataset]", value) or ()):
                collect(plan, item, f"{path}[{i}].", found, codec)
            continue
        decision = decide(plan, d, tag, vr)
        if isinstance(decision, SiteRule):  # (a value it keeps by design: as one kept)
            changed = changes(decision, plan.rules, vr, value)
            if changed is not None:
                record(found, decision, vr, changed, path)
            continue
        suspect = _suspect(decision, vr, tag, as_read, raw.value, misplaced, read_as)
        recorded = suspect if suspect is not None else resolve(decision.action, vr)
        record(found, recorded, vr, value, path)


def _suspect(
    decision: Decision,
    vr: str,
    tag: int,
    as_read: str,
    read: object,
    misplaced: frozenset[int],
    read_as: frozenset[int],
) -> Recorded | None:
    """What records a value as damaged (``Decision.suspect``); None: ``decision``'s action does.

    ``read``: the value as read, VR ``as_read``. As the engine records it: the decision if a
    suspect one (read in a VR its attribute never has); else, for a value kept or cleaned,
    ``profile.damaged``'s, if a suspect one, or its action.
    """
    if decision.suspect:
        return decision
    if resolve(decision.action, vr) not in (Action.KEEP, Action.CLEAN):
        return None
    suspect = damaged(tag, as_read, read, misplaced, read_as)
    if suspect is None:
        return None
    return suspect if suspect.suspect else suspect.action


def _read(d: Dataset, tag: int, raw: object, as_read: str, codec: str | None) -> tuple[str, object]:
    """An element's VR and value: text decoded here where it can be, else by pydicom."""
    if (
        codec is not None
        and type(raw) is RawDataElement
        and as_read in rawvalue.TEXT_VRS
        and tag != SPECIFIC_CHARACTER_SET
    ):
        value = rawvalue.decode(raw, as_read, codec)
        if value is not UNDECODED:
            return as_read, value
    try:
        elem = d[tag]
    except rawvalue.ELEMENT_ERRORS:  # pydicom could not settle an ambiguous VR by the
        # attributes it asks (Bits Allocated under a damaged VR): judged as read, as the
        # engine judges it (Pixel Data written as UN stays UN)
        elem = DataElement(tag, as_read, raw.value)  # type: ignore[attr-defined]
    return str(elem.VR), elem.value


def outside_values(ds: Dataset) -> dict[str, str]:
    """Identifying values outside the data set: file meta AE titles, preamble text."""
    found: dict[str, str] = {}
    meta = getattr(ds, "file_meta", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag in META_PHI:
            if meta is not None and tag in meta:
                try:
                    value = rawvalue.value_of(meta, tag, rawvalue.DEFAULT)
                except NotImplementedError:  # an unknown VR: its bytes searched for as text
                    raw = meta._dict[tag].value  # noqa: SLF001 - as stored
                    value = raw.decode("latin-1") if isinstance(raw, bytes) else None
                add(found, value, tag_path(META, tag))
    preamble = getattr(ds, "preamble", None) or b""
    for word in preamble.decode("latin-1").split():
        if len(word) >= MIN_LENGTH * 2 and word.isprintable():
            put(found, word, "preamble")
    return found


def identifying_values(plan: Plan, ds: Dataset) -> dict[str, str]:
    """Value -> original element path, for every value the plan does not keep unchanged."""
    found: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collect(plan, ds, "", found)
    for value, path in outside_values(ds).items():
        put(found, value, path)
    return found
