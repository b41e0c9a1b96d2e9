"""One small pure function per action (PS3.15 Table E.1-1a), chosen by the plan, not by keyword.

Each takes the element's VR and value and the per-object context, and returns the new value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.multival import MultiValue

from indexer.deid import pseudonym
from indexer.deid.table import Action

TEXT_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    }
)
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

# A dummy (D) per VR: valid for the VR, within its maximum length, identifying nothing.
DUMMY: Mapping[str, Any] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UR": "",
    "UT": "ANONYMIZED",
    "AT": 0,
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
}


@dataclass(slots=True)
class Context:
    """What actions need to know about the object being de-identified."""

    pseudonym_key: bytes
    date_offset_days: int
    uid_map: dict[str, str] = field(default_factory=dict)
    trace: list[Any] | None = None  # TraceStep records for --what-if
    found: dict[str, str] | None = None  # identifying values seen, for the leak check
    replaced: dict[int, Any] = field(default_factory=dict)  # originals of pseudonymized ids
    scope: Any = None  # rules.Scope: the original identifiers keyed methods are scoped by
    codec: str | None = None  # rawvalue.codec of the object: None, pydicom decodes values
    generated: set[str] = field(default_factory=set)  # values derived from the key

    def new_uid(self, original: str) -> str:
        """The pseudonym of one UID, cached for the object."""
        u = self.uid_map.get(original)
        if u is None:
            u = self.uid_map[original] = pseudonym.uid(self.pseudonym_key, original)
            self.generated.add(u)
        return u


def empty(vr: str) -> Any:  # noqa: ANN401
    """A zero-length value of this VR (Z)."""
    if vr in TEXT_VRS:
        return ""
    if vr in BINARY_VRS:
        return b""
    return None


def dummy(vr: str, value: Any, ctx: Context) -> Any:  # noqa: ANN401
    """A dummy value of this VR (D); UIDs get their keyed pseudonym so references hold."""
    if vr == "UI":
        return replace_uid(vr, value, ctx)
    if vr in BINARY_VRS:
        return b""
    return DUMMY.get(vr)


def zero(vr: str, value: Any, ctx: Context) -> Any:  # noqa: ANN401, ARG001
    """A zero-length value (Z)."""
    return empty(vr)


def keep(vr: str, value: Any, ctx: Context) -> Any:  # noqa: ANN401, ARG001
    """The value unchanged (K)."""
    return value


_NO_UID = re.compile(r"[^0-9. \0]")  # a UID holds digits and points (padding aside)


def not_a_uid(value: str) -> bool:
    """Whether one value of a UI element holds a character no UID has (a letter)."""
    return _NO_UID.search(value) is not None


def replace_uid(vr: str, value: Any, ctx: Context) -> Any:  # noqa: ANN401, ARG001
    """Every UID value replaced by its keyed pseudonym (U); multi-valued too.

    Bytes (a sequence under OB or OW, whose items are in no encoding that can be told) are
    emptied: no UID in them can be read to be replaced, and no text could be written there.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return b""
    if isinstance(value, (list, MultiValue)):
        return [ctx.new_uid(str(v)) for v in value if v]
    if not value:
        return value
    return ctx.new_uid(str(value))


def clean(vr: str, value: Any, ctx: Context) -> Any:  # noqa: ANN401
    """Clean (C): dates move by the patient's whole-day offset; other values become dummies.

    No row of the table cleans a UID. A kept one holding text (``profile.UID_HOLDS_TEXT``) is
    cleaned: each of its values that is no UID gets its keyed pseudonym, the others stay.
    """
    if vr == "UI":
        return _map_values(value, lambda v: ctx.new_uid(v) if not_a_uid(v) else v)
    if vr in ("DA", "DT"):
        shifted = _map_values(value, lambda v: shift_date(v, vr, ctx.date_offset_days))
        # derived from the key, as pseudonyms are: an ID's digits inside one are chance
        ctx.generated.update(v for v in (shifted if isinstance(shifted, list) else [shifted]) if v)
        return shifted
    if vr == "TM":  # a whole-day shift leaves times of day as they are
        return value
    return dummy(vr, value, ctx)


_TIME_OF_DAY = re.compile(r"([0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?)?([+-][0-9]{4})?")


def shift_date(value: str, vr: str, days: int) -> str:
    """Shift a DA or DT value by whole days, keeping its precision.

    A value that is no date goes empty, as does one the shift takes out of the calendar's
    years 1 to 9999: a placeholder such as 00010101 (.NET's smallest date, which some writers
    put for none) shifted back. A year under 1000 keeps its four digits. A date-time whose
    rest is no time of day and offset goes empty too: a name typed after the date, or the
    elements a damaged one swallowed. Kept, that rest was written into the copy, and the
    shifted value taken for derived from the key (a name inside it for chance), not checked.
    """
    text = str(value).strip(" \t\r\n\0")
    if len(text) < 8 or not text[:8].isdigit():  # noqa: PLR2004
        return ""
    if vr == "DT" and not _TIME_OF_DAY.fullmatch(text[8:]):
        return ""
    try:
        d = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return ""
    shifted = f"{d.year:04}{d.month:02}{d.day:02}"  # (``strftime`` pads no year under 1000)
    return shifted + (text[8:] if vr == "DT" else "")


def _map_values(value: Any, fn: Callable[[str], str]) -> Any:  # noqa: ANN401
    if isinstance(value, (list, MultiValue)):
        return [fn(str(v)) for v in value]
    if value in (None, ""):
        return value
    return fn(str(value))


ActionFn = Callable[[str, Any, Context], Any]

ACTIONS: Mapping[Action, ActionFn] = {
    Action.DUMMY: dummy,
    Action.ZERO: zero,
    Action.KEEP: keep,
    Action.UID: replace_uid,
    Action.CLEAN: clean,
}
