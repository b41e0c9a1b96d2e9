"""The leak check: does any identifying value of the original survive in the output.

``identifying_values`` collects, before de-identification, the values the plan changes or
removes (every VR, private and nested included, file meta and preamble too). ``find_leaks``
then searches the de-identified object for each: in every decoded element (reported by
element path) and in the raw bytes of its header, in the common encodings. Reports name
element paths, never values.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.dataset import Dataset

from indexer.deid.engine import decide
from indexer.deid.profile import COMPOUND, Plan, resolve
from indexer.deid.rules import SiteRule
from indexer.deid.table import Action

MIN_LENGTH = 4  # shorter values ("M", "CT", "1") say nothing and match everywhere
ENCODINGS = ("utf-8", "latin-1", "utf-16-le", "iso2022_jp", "shift_jis", "euc_kr", "gb18030")
BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


@dataclass(frozen=True, slots=True)
class Leak:
    """One identifying value of the original found in the output."""

    source_path: str  # where it was in the original
    found_in: str  # element path in the output, or "header bytes"


def _path(parents: tuple[str, ...], tag: int) -> str:
    return "".join(parents) + f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _texts(value: object) -> list[str]:
    if value is None or isinstance(value, bytes | bytearray):
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [t for v in value for t in _texts(v)]  # type: ignore[attr-defined]
    text = str(value).strip()
    parts = [text]
    if "^" in text or "=" in text:  # person names: each component on its own too
        parts += [p for p in text.replace("=", "^").split("^") if p]
    return parts


def _add(found: dict[str, str], value: object, path: str) -> None:
    for t in _texts(value):
        if len(t) >= MIN_LENGTH:
            found.setdefault(t, path)


SAME_PLACE = "@"  # path prefix: a shifted date, a leak only if it survives where it was


def _collect(plan: Plan, d: Dataset, parents: tuple[str, ...], found: dict[str, str]) -> None:
    for elem in d:
        vr = str(elem.VR)
        path = _path(parents, elem.tag)
        if vr == "SQ":
            for i, item in enumerate(elem.value or ()):
                _collect(plan, item, (f"{path}[{i}].",), found)
            continue
        decision = decide(plan, d, elem.tag, vr)
        if isinstance(decision, SiteRule):  # a computing site method changes the value
            prefix = SAME_PLACE if decision.method == "dateshift" else ""
            _add(found, elem.value, prefix + path)
            continue
        action = decision.action
        if action in COMPOUND:
            action = resolve(action, vr)
        if action is Action.CLEAN and vr == "TM":
            continue  # a whole-day date shift keeps times of day: retained by design
        if action is Action.CLEAN and vr in ("DA", "DT"):
            # a shifted date may equal another original date by chance: check it in place
            _add(found, elem.value, SAME_PLACE + path)
        elif action is not Action.KEEP:
            _add(found, elem.value, path)


META_PHI = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "PrivateInformation",
)


def identifying_values(plan: Plan, ds: Dataset) -> dict[str, str]:
    """Value -> original element path, for every value the plan does not keep unchanged."""
    found: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _collect(plan, ds, (), found)
        meta = getattr(ds, "file_meta", None)
        for elem in meta if meta is not None else ():
            if elem.keyword in META_PHI:
                _add(found, elem.value, _path(("file meta ",), elem.tag))
    preamble = getattr(ds, "preamble", None) or b""
    for word in preamble.decode("latin-1").split():
        if len(word) >= MIN_LENGTH * 2 and word.isprintable():
            found.setdefault(word, "preamble")
    return found


def _decoded(ds: Dataset) -> Iterable[tuple[str, str]]:
    def walk(d: Dataset, parents: tuple[str, ...]) -> Iterable[tuple[str, str]]:
        for elem in d:
            path = _path(parents, elem.tag)
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value or ()):
                    yield from walk(item, (f"{path}[{i}].",))
                continue
            for t in _texts(elem.value):
                yield path, t

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from walk(meta, ("file meta ",))
    yield from walk(ds, ())


def header_bytes(ds: Dataset) -> bytes:
    """The output's preamble, file meta and data set without bulk pixel data."""
    bulk = {t: ds[t] for t in BULK_TAGS if t in ds}
    for t in bulk:
        del ds[t]
    try:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    finally:
        for t, elem in bulk.items():
            ds[t] = elem


def find_leaks(values: dict[str, str], out: Dataset, raw: bytes | None = None) -> list[Leak]:
    """Every identifying value of the original that survives in ``out``.

    ``raw`` is the encoded header of ``out`` (without pixel data) when the caller has it.
    """
    if not values:
        return []
    leaks: dict[str, Leak] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = list(_decoded(out))
    for path, text in decoded:
        for value, source in values.items():
            if value in text and source not in leaks:
                if source.startswith(SAME_PLACE):
                    if source[1:] == path:
                        leaks[source] = Leak(source[1:], path)
                    continue
                leaks[source] = Leak(source, path)
    raw = header_bytes(out) if raw is None else raw
    for value, source in values.items():
        if source.startswith(SAME_PLACE) or source in leaks:
            continue
        if enc := _encoded_in(value, raw):
            leaks[source] = Leak(source, f"header bytes ({enc})")
    return sorted(leaks.values(), key=lambda leak: leak.source_path)


def _encoded_in(value: str, raw: bytes) -> str | None:
    for enc in ENCODINGS:
        try:
            needle = value.encode(enc)
        except (UnicodeEncodeError, LookupError):
            continue
        if len(needle) >= MIN_LENGTH and needle in raw:
            return enc
    return None
