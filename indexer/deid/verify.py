"""The leak check: does any identifying value of the original survive in the output.

``identifying_values`` collects, before de-identification, the values the plan changes or
removes (every VR, private and nested included, file meta and preamble too). ``find_leaks``
then searches the de-identified object for each: in every decoded element (reported by
element path), in the raw bytes of its header, in native pixel data past its image (what a
length that runs on took in) and in the headers of its compressed frames (``frames``), in
the common encodings; and in all its compressed frames' bytes, for values too long to lie in a
picture's data by chance (``DATA_MIN``). Reports name element paths, never values.
"""

from __future__ import annotations

import functools
import io
import itertools
import re
import warnings
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Self

import ahocorasick
from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from indexer.deid import frames, pixels, rawvalue
from indexer.deid.profile import NUMBER_TEXT
from indexer.deid.rawvalue import SPECIFIC_CHARACTER_SET, TEXT_VRS, UNDECODED, Marking, Written
from indexer.deid.values import (
    MADE_UP,
    META,
    MIN_LENGTH,
    NUMBER_AND_TAG_VRS,
    PADDING,
    SAME_PLACE,
    STANDARD_UID_ROOT,
    identifying_values,
    precaution,
    shown,
    tag_path,
    texts,
    wide,
)
from indexer.spans import Span

__all__ = ["Generated", "Leak", "Search", "find_leaks", "header_bytes", "identifying_values"]

ENCODINGS = ("utf-8", "latin-1", "utf-16-le", "iso2022_jp", "shift_jis", "euc_kr", "gb18030")
BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


@dataclass(frozen=True, slots=True)
class Leak:
    """One identifying value of the original found in the output."""

    source_path: str  # where it was in the original
    found_in: str  # element path in the output, or "header bytes"


def _decoded(
    ds: Dataset,
    *,
    changed_only: bool,
    kept_only: bool = False,
    vrs: frozenset[str] | None = None,
    skip: frozenset[str] = frozenset(),
    whole: bool = False,
) -> Iterable[tuple[str, str]]:
    r"""(path, text) of every decoded element.

    With ``changed_only``, elements still raw (never touched since they were read, so kept
    as read) are skipped: the header bytes search covers them. Elements de-identification
    wrote (``Written``) are decoded from their bytes. With ``kept_only``, only those still
    raw (and the sequences holding them); with ``vrs``, only elements of those VRs; elements
    of the VRs in ``skip`` never. With ``whole``, a multi-valued element's values joined as
    written ("0.0\0.0\1.0") follow its values.
    """

    def walk(d: Dataset, parents: str, charset: str | None) -> Iterable[tuple[str, str]]:
        charset = _lean_charset(d, parents, charset)
        for tag, raw in list(d._dict.items()):  # noqa: SLF001 - as stored, not converted
            if _skipped(raw, tag, changed_only=changed_only, kept_only=kept_only) or not _wanted(
                raw, tag, vrs, skip
            ):
                continue
            path = tag_path(parents, tag)
            lean = _lean_texts(raw, charset)
            if lean is not None:
                joined = _joined(_decode(raw, charset)) if whole and len(lean) > 1 else None
                yield from ((path, t) for t in (*lean, joined) if t is not None)
                continue
            elem = rawvalue.element(d, tag)  # not converted in place: see there
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value or ()):
                    yield from walk(item, f"{path}[{i}].", charset)
                continue
            joined = _joined(elem.value) if whole else None
            yield from ((path, t) for t in (*texts(elem.value), joined) if t is not None)

    charset = rawvalue.codec(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from walk(meta, META, charset)
    yield from walk(ds, "", charset)


def _lean_charset(d: Dataset, parents: str, charset: str | None) -> str | None:
    """The codec ``_lean_texts`` decodes ``d``'s elements with; None: pydicom decodes them.

    An item with a character set of its own is left to pydicom. An implicit VR data set's
    elements are given their VRs first (``rawvalue.give_vrs``): decoded here, as explicit
    VR ones are, not converted one by one.
    """
    if charset is not None and SPECIFIC_CHARACTER_SET in d and parents:
        return None
    if charset is not None:
        rawvalue.give_vrs(d)
    return charset


def _wanted(raw: object, tag: int, vrs: frozenset[str] | None, skip: frozenset[str]) -> bool:
    """Whether ``_decoded`` looks at an element by its VR (sequences: always)."""
    if vrs is None and not skip:
        return True
    vr = rawvalue.vr_of(raw, tag)
    return vr not in skip and (vrs is None or vr in vrs or vr == "SQ")


def _skipped(raw: object, tag: int, *, changed_only: bool, kept_only: bool) -> bool:
    """Whether ``_decoded`` passes over the stored element ``raw``."""
    if isinstance(raw, Marking):
        return True  # the constant marking: the header bytes search covers it
    unchanged = isinstance(raw, RawDataElement) and not isinstance(raw, Written)
    if changed_only:  # as read: the header bytes search covers it, but where a reader differs
        return unchanged and not _read_otherwise(raw, tag)
    # with kept_only, what de-identification wrote goes; the sequences are walked into
    return kept_only and not unchanged and getattr(raw, "VR", None) != "SQ"


_ESC = bytes([rawvalue.ESC])


def _read_otherwise(raw: object, tag: int) -> bool:
    """Whether a text element kept as read shows a reader what its bytes may not hold.

    Its bytes are searched for each value in the common encodings (``ENCODINGS``); a reader
    decodes them in the object's character set. Beyond ASCII the two differ: "Иванов" in
    ISO_IR 144 (Cyrillic), "Łukasz" in ISO_IR 101 (Latin-2) are bytes no encoding searched
    gives. And pydicom takes an ISO 2022 escape sequence out of the text of an element in
    the character set, whatever set the object names ("Ja", ESC ( B, "ne" reads "Jane");
    another reader those it does not know, or those in a code string. Such an element is
    searched decoded, and with its escapes taken out (``values.texts``).
    """
    vr = getattr(raw, "VR", None)  # (the VR first: pixel data is long; once per kept element)
    if vr not in TEXT_VRS and (vr is not None or rawvalue.vr_of(raw, tag) not in TEXT_VRS):
        return False
    data = raw.value  # type: ignore[attr-defined]
    if type(data) is not bytes:
        if not isinstance(data, memoryview):
            return False
        data = bytes(data)
    return not data.isascii() or _ESC in data


def _lean_texts(raw: object, charset: str | None) -> tuple[str, ...] | None:
    """The texts of a raw element decoded here; None where pydicom decodes it."""
    if isinstance(getattr(raw, "value", None), Span):
        return ()  # pixel data left in its source file: no text
    if charset is None or not isinstance(raw, RawDataElement) or raw.VR is None:
        return None
    data = raw.value
    if type(data) is bytes and len(data) <= _KEPT_TEXTS:
        return _texts_of(raw.VR, data, charset)
    value = rawvalue.decode(raw, raw.VR, charset)
    return None if value is UNDECODED else tuple(texts(value))


_KEPT_TEXTS = 1024  # bytes: longer values seldom repeat


def _decode(raw: object, charset: str | None) -> object:
    """The value of a raw element that ``_lean_texts`` decoded; None for any other."""
    if not isinstance(raw, RawDataElement) or raw.VR is None or charset is None:
        return None
    return rawvalue.decode(raw, raw.VR, charset)


def _joined(value: object) -> str | None:
    """A multi-value's values joined as they are written; None for any other value."""
    if not isinstance(value, list | tuple | MultiValue) or len(value) < 2:  # noqa: PLR2004
        return None
    if any(isinstance(v, bytes | bytearray | memoryview | Dataset) for v in value):
        return None
    return "\\".join(str(v) for v in value).strip(PADDING)


@functools.lru_cache(maxsize=8192)  # written values repeat from object to object: kept
def _texts_of(vr: str, data: bytes, charset: str) -> tuple[str, ...] | None:
    value = rawvalue.decode_bytes(vr, data, charset)
    return None if value is UNDECODED else tuple(texts(value))


class Search:
    """Identifying values made ready to search many outputs for: each output read once.

    ``find_leaks`` asks, for every value, whether it occurs in each part of the output; over
    the values of a whole archive (``verify``'s pooled search) that is as many searches of
    every output as there are values, and the archive's time grows with its square. Here
    one automaton (Aho-Corasick) over all of them finds, in one pass over each part, which
    values occur there at all; only those are then judged as ``find_leaks`` judges every
    value (a word of its own, outside the pseudonyms...). It finds every value that occurs,
    and some that do not (it looks in a looser form of the bytes), never fewer.

    Memory: the values and a trie of their characters, shared where they begin alike.
    """

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self._order = {value: i for i, value in enumerate(values)}
        self._others: bool | None = None  # whether a value's data needle is no ASCII text
        self._automaton = ahocorasick.Automaton()
        for value in values:
            for key in _keys(value):
                held = self._automaton.get(key, None)
                if held is None:
                    self._automaton.add_word(key, (value,))
                elif value not in held:
                    self._automaton.add_word(key, (*held, value))
        if values:
            self._automaton.make_automaton()

    def __len__(self) -> int:
        return len(self.values)

    def in_text(self, text: str) -> set[str]:
        """The values that may occur in ``text``, in any case (every one that does)."""
        return self._found(text.casefold()) if self.values else set()

    def in_picture(self, text: PictureText) -> set[str]:
        """The values that may occur in a picture's data (``PictureText``): every one that does.

        Its runs of text; all its bytes where a value has a needle of other bytes.
        """
        if self._others is None:
            self._others = any(
                _hay(needle) == "data"
                for value in self.values
                for _enc, needle in _data_needles(value)
            )
        found = self.in_bytes(text.ascii) | self.in_bytes(text.wide)
        return found | self.in_bytes(text.data) if self._others else found

    def in_bytes(self, data: bytes | memoryview) -> set[str]:
        """The values that may occur in ``data``, in any encoding searched (every one that does).

        The bytes are read as Latin-1 (one character a byte), and again without their NUL
        bytes, where an ASCII value's UTF-16 lies as its plain text; their ASCII letters in
        lower case, as the keys' (``_keys``).
        """
        if not self.values:
            return set()
        raw = bytes(data).lower()
        return self._found(raw.decode("latin-1")) | self._found(
            raw.replace(b"\x00", b"").decode("latin-1")
        )

    def ordered(self, found: Iterable[str]) -> list[tuple[str, str]]:
        """(value, source) of ``found``, in the order of the values given."""
        return [(v, self.values[v]) for v in sorted(found, key=self._order.__getitem__)]

    def _found(self, text: str) -> set[str]:
        return {value for _end, held in self._automaton.iter(text) for value in held}


def _keys(value: str) -> set[str]:
    """What the automaton looks for, so that every encoding ``_needles`` searches is found.

    The value itself (its UTF-8 is its Latin-1 where it is ASCII, and decoded texts are
    searched as text), each needle's bytes read as Latin-1, and an ASCII value's UTF-16 as
    its text without NULs (searched for in bytes without theirs); case-folded as what they
    are searched for in is (texts ``str.casefold``, which folds a letter alike wherever it
    stands, as ``str.lower`` does not: a final sigma; bytes ``bytes.lower``): what occurs
    in its own case, and what occurs in any, is found.
    """
    keys = {value.casefold()}
    for enc, needle in _low_needles(value):
        if enc == "utf-16-le" and value.isascii():
            keys.add(value.casefold().replace("\x00", ""))
        else:
            keys.add(needle.decode("latin-1"))
    return {k for k in keys if k}


def header_bytes(ds: Dataset) -> bytes:
    """The output's preamble, file meta and data set without bulk pixel data."""
    # as stored, never converted: pydicom would settle an ambiguous VR ("OB or OW", of Pixel
    # Data written as UN) by Bits Allocated, which may be damaged
    bulk = {t: ds._dict.pop(BaseTag(t)) for t in BULK_TAGS if t in ds._dict}  # noqa: SLF001
    try:
        buf = io.BytesIO()
        with warnings.catch_warnings(), rawvalue.left_as_read(ds):
            warnings.simplefilter("ignore")
            ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    finally:
        for t, elem in bulk.items():
            ds._dict[BaseTag(t)] = elem  # noqa: SLF001


def find_leaks(
    values: dict[str, str] | Search,
    out: Dataset,
    raw: bytes | None = None,
    *,
    changed_only: bool = False,
    generated: Collection[str] = (),
    streamed_frames: bool = False,
) -> list[Leak]:
    """Every identifying value of the original that survives in ``out``.

    ``raw`` is the encoded header of ``out`` (without pixel data) when the caller has it.
    ``changed_only`` compares decoded values only of elements de-identification touched;
    untouched ones are searched for in ``raw`` only (the ingest's check, which must not decode
    what it did not change). ``generated`` are values derived from the key (pseudonym UIDs and
    IDs): a value found only inside one of them, or inside a dummy value, is there by chance
    (a time "101500" among the digits of a pseudonym UID, "1900" in the dummy date
    "19000101"), not a leak. ``streamed_frames``: the headers of frames that are a span of
    their file (a large object's) are read and searched too (``verify``; the ingest searches
    them as it copies them). ``values`` made a ``Search`` are searched for in one pass over
    each part (many outputs searched for the values of many originals); the leaks found are
    the same.
    """
    if not values:
        return []
    search, wanted = (values, values.values) if isinstance(values, Search) else (None, values)
    leaks: dict[str, Leak] = {}
    kept = _Kept(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # numbers are not searched in: a serial number "00000" inside "6.000000" is chance
        decoded = list(_decoded(out, changed_only=changed_only, skip=NUMBER_AND_TAG_VRS))
    _in_decoded(wanted, decoded, generated, kept, leaks, search)
    raw = header_bytes(out) if raw is None else raw
    searched = [
        (where, data, data.lower())
        for where, data in (
            ("header bytes", raw),
            ("pixel data past the image", pixels.past_the_image(out)),
            ("compressed frame headers", frames.headers_in(out, streamed=streamed_frames)),
        )
        if data
    ]
    candidates: Iterable[tuple[str, str]] = wanted.items()
    if search is not None:  # those that occur in none of the parts cannot be found there
        candidates = search.ordered(set().union(*(search.in_bytes(d) for _, d, _ in searched)))
    for value, source in candidates:
        if source.startswith(SAME_PLACE) or source in leaks:
            continue
        for where, data, lowered in searched:
            folded = lowered if any_case(source) else None
            enc = _encoded_in(value, data, generated, kept, lowered=folded)
            if enc and not kept.explains(value, source):
                leaks[source] = Leak(shown(source), f"{where} ({enc})")
                break
    for data in frames.data_in(out, streamed=streamed_frames):
        _in_frame_data(wanted if search is None else search, data, generated, kept, leaks)
    return sorted(leaks.values(), key=lambda leak: leak.source_path)


def _in_frame_data(
    values: dict[str, str] | Search,
    data: bytes,
    generated: Collection[str],
    kept: _Kept,
    leaks: dict[str, Leak],
) -> None:
    """Add to ``leaks`` the long values (``DATA_MIN``) in ``data``, compressed frames' bytes."""
    text = PictureText(data)
    found = (
        values.ordered(values.in_picture(text)) if isinstance(values, Search) else values.items()
    )
    for value, source in found:
        if source.startswith(SAME_PLACE) or source in leaks or not text.holds(value):
            continue
        enc = _encoded_in(value, data, generated, kept, data=True)
        if enc and not kept.explains(value, source):
            leaks[source] = Leak(shown(source), f"compressed frame data ({enc})")


def frame_header_check(
    values: dict[str, str], out: Dataset, generated: Collection[str] = ()
) -> Callable[[bytes], str | None]:
    """A search of the header bytes of streamed frames, as ``find_leaks`` searches those held.

    The frames of a large object are read only as its copy is written (``frames.Blanked``);
    this searches each fragment's headers then. It gives where the first value found came
    from, or None.
    """
    kept = _Kept(out)
    wanted = {v: source for v, source in values.items() if not source.startswith(SAME_PLACE)}

    def check(data: bytes) -> str | None:
        lowered = data.lower()
        for value, source in wanted.items():
            folded = lowered if any_case(source) else None
            if _encoded_in(value, data, generated, kept, lowered=folded) and not kept.explains(
                value, source
            ):
                return shown(source)
        return None

    return check


def frame_data_check(
    values: dict[str, str], out: Dataset, generated: Collection[str] = ()
) -> Callable[[bytes], str | None] | None:
    """A search of all the bytes of streamed frames for long values (``DATA_MIN``).

    As ``find_leaks`` searches those held (``frames.data_in``). It gives where the first
    value found came from, or None; it is None itself where no value is that long.
    """
    kept = _Kept(out)
    wanted = {
        v: source
        for v, source in values.items()
        if not source.startswith(SAME_PLACE) and _data_needles(v)
    }
    if not wanted:
        return None

    def check(data: bytes) -> str | None:
        text = PictureText(data)
        for value, source in wanted.items():
            if (
                text.holds(value)
                and _encoded_in(value, data, generated, kept, data=True)
                and not kept.explains(value, source)
            ):
                return shown(source)
        return None

    return check


class PictureText:
    """Where in a picture's data (``data``) a long value can lie at all: its runs of text.

    Compressed data is as random bytes. A value's needle of printable ASCII lies within a run
    of ``DATA_MIN`` or more such bytes, its UTF-16 within a run of as many pairs of such a
    byte and NUL: few (a run of 8 is one in some 2,800 places of random data), and found in
    one pass of ``bytes.translate`` and ``bytes.find``. Needles are looked for in those runs,
    not in all the bytes (54 needles in 8 MiB: some 65 ms; its runs found, 20), unless runs are
    many (``_runs``); one of other bytes (a name in Latin-1, or in UTF-8 beyond ASCII) in all
    of them.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        marks = data.translate(_MARKS)
        self.ascii = _runs(data, marks, b"a")  # joined by NUL, which no such needle holds
        self.wide = _runs(data, marks, b"az")  # joined by 01 bytes

    def holds(self, value: str) -> bool:
        """Whether a needle of ``value`` long enough to count (``_data_needles``) lies here."""
        return any(needle in getattr(self, _hay(needle)) for _enc, needle in _data_needles(value))


def _hay(needle: bytes) -> str:
    """The ``PictureText`` bytes ``needle`` is looked for in: "ascii", "wide" or "data" (all)."""
    if not needle.translate(None, _PRINTABLE):
        return "ascii"
    if not needle[::2].translate(None, _PRINTABLE) and not needle[1::2].strip(b"\0"):
        return "wide"
    return "data"


_PRINTABLE = bytes(range(0x20, 0x7F))
# each byte's mark: "a" printable ASCII, "z" NUL (the pairs of UTF-16), "." any other
_MARKS = bytes(0x61 if b in _PRINTABLE else 0x7A if b == 0 else 0x2E for b in range(256))


def _runs(data: bytes, marks: bytes, unit: bytes) -> bytes:
    """The runs of ``DATA_MIN`` or more ``unit`` marks in ``marks``, as bytes of ``data``.

    All of ``data`` where they are many (one in 1 KiB or more: text, or pixel values that are
    letters): a needle lies there as it does in them, and one search of it is the quicker.
    """
    found: list[bytes] = []
    first = unit * DATA_MIN
    at = marks.find(first)
    nul: int | None = None  # the next NUL mark past the last run, once looked for (-1: none)
    while at != -1:
        if len(found) > len(marks) >> 10:
            return data
        end = at + len(first)
        if unit == b"a":  # on to the next byte that is no printable one
            if nul is None or 0 <= nul < end:  # (looked for again only once passed: linear)
                nul = marks.find(b"z", end)
            end = min(e % (len(marks) + 1) for e in (marks.find(b".", end), nul))  # (-1: none)
        else:
            while marks.startswith(first, end):  # a long run: a stride at a time
                end += len(first)
            while marks.startswith(unit, end):
                end += len(unit)
        found.append(data[at:end])
        at = marks.find(first, end)
    return (b"\0" if unit == b"a" else b"\1").join(found)


def _in_decoded(
    values: dict[str, str],
    decoded: list[tuple[str, str]],
    generated: Collection[str],
    kept: _Kept,
    leaks: dict[str, Leak],
    search: Search | None = None,
) -> None:
    """Add to ``leaks`` each value found in a decoded element, by the element's path.

    A value of an attribute removed for what it is, in any case (``any_case``; both
    case-folded).
    """
    everything = "\x00".join(text for _, text in decoded)  # one search per value first
    if search is None:
        low = everything.casefold()
        candidates = {
            v: s
            for v, s in values.items()
            if (_folded(v) in low if any_case(s) else v in everything)
        }
    else:  # one pass over them all
        candidates = dict(search.ordered(search.in_text(everything)))
    if not candidates:
        return
    forms = {v: (_folded(v), True) if any_case(s) else (v, False) for v, s in candidates.items()}
    for path, text in decoded:
        low_text = text.casefold()
        for value, source in candidates.items():
            form, lowercase = forms[value]
            hay = low_text if lowercase else text
            if (
                form in hay
                and source not in leaks
                and _word_in(form, hay)
                and not _by_chance(value, text, generated)
            ):
                if source.startswith(SAME_PLACE):
                    if source[1:] == path:
                        leaks[source] = Leak(source[1:], path)
                    continue
                if not kept.explains(value, source):
                    leaks[source] = Leak(shown(source), path)


_TEXT_NUMBERS = frozenset({"DS", "IS"})


class _Kept:
    """The values of ``out``'s elements kept as read, decoded only if asked.

    Some elements are removed for what they might hold, not for what they are: where an
    attribute the profile keeps holds their value, the copy shows it there anyway, and it is
    not reported. A private element, or a public one no standard defines, may be held
    anywhere in a kept value (a vendor's private copy of the Manufacturer, "SIEMENS", or of
    the model name's first 16 characters); a description (Study Description, ...), or a value
    kept but replaced as damaged (a time out of place), only as a kept attribute's whole value
    ("Brain" as the Position Reference Indicator; the same time as the Content Time); the name
    of the institution, department or station inside the kept Manufacturer or model name (a
    vendor's own test images: "TOSHIBA" in "TOSHIBA_MEC"). A value identifying attributes
    hold too (the patient's name) is recorded from those, and reported.
    """

    def __init__(self, out: Dataset) -> None:
        self.out = out
        self.texts: frozenset[str] = frozenset()
        self.joined: str | None = None
        self.equipment: tuple[str, ...] = ()
        self._numbers: tuple[str, ...] | None = None

    def numbers(self) -> tuple[str, ...]:
        r"""The decimal and integer strings kept as read, and each list of them as written.

        A serial number "00000" inside a slice thickness "6.000000" is no leak, nor a text
        "0.0\0.0\1.0" inside an Image Orientation (Patient) "1.0\0.0\0.0\0.0\0.0\1.0".
        A DS or IS holding letters (a placeholder such as N/A aside) is no number: what it
        holds is searched for as any text is.
        """
        if self._numbers is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = _decoded(
                    self.out, changed_only=False, kept_only=True, vrs=_TEXT_NUMBERS, whole=True
                )
                self._numbers = tuple({text for _, text in found if NUMBER_TEXT.fullmatch(text)})
        return self._numbers

    def explains(self, value: str, source: str) -> bool:
        """Whether a kept attribute holds ``value``, recorded from ``source``, as allowed."""
        kind = precaution(source)
        if kind is None:
            return False
        if self.joined is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = list(_decoded(self.out, changed_only=False, kept_only=True, whole=True))
            texts = [text for _, text in found]
            self.texts, self.joined = frozenset(texts), "\x00".join(texts)
            self.equipment = tuple(text for path, text in found if path.endswith(_EQUIPMENT))
        if kind == "site":
            return any(value in text for text in self.equipment)
        return value in (self.joined if kind == "unknown" else self.texts)


_EQUIPMENT = ("(0008,0070)", "(0008,1090)")  # Manufacturer, Manufacturer's Model Name


def _by_chance(value: str, text: str, generated: Collection[str]) -> bool:
    """Whether ``value`` is a part of ``text``, a value de-identification made up.

    Or a UID the standard defines (a SOP class, a transfer syntax): a Patient ID "10008"
    or a Study ID "1000" lies in every "1.2.840.10008..." by chance.
    """
    return value != text and (text in generated or text in MADE_UP or text in UID_dictionary)


def _encoded_in(
    value: str,
    raw: bytes,
    generated: Collection[str],
    kept: _Kept | None = None,
    *,
    lowered: bytes | None = None,
    data: bool = False,
) -> str | None:
    """The encoding in which ``value`` occurs in ``raw``, a word of its own.

    Outside every generated value and every number kept as read. Given ``lowered``, ``raw``
    with its ASCII letters in lower case (``bytes.lower``), in any case: a name written
    "DOE" is found as "Doe" (the letters' places are the same, and the generated values'
    are told in ``raw``). ``data``: ``raw`` is a picture's data, searched in the encodings
    where ``value`` is long enough (``_data_needles``), in its own case, and found whatever
    bytes lie beside it (a letter there is chance).
    """
    if data:
        hay, needles = raw, _data_needles(value)
    elif lowered is None:
        hay, needles = raw, _needles(value)
    else:
        hay, needles = lowered, _low_needles(value)
    for enc, needle in needles:
        if needle not in hay:
            continue
        # letters at the edges: a name inside a longer word ("MARY" in "PRIMARY") is no leak
        width = _WIDTHS.get(enc, 0) if value.isascii() and not data else 0
        edges = (value[0].isalpha() and width, value[-1].isalpha() and width)
        spans = _spans(raw, generated, kept.numbers() if kept is not None else ())
        if _outside(needle, hay, spans, edges):
            return enc
    return None


_WIDTHS = {"utf-8": 1, "latin-1": 1, "utf-16-le": 2}  # bytes per ASCII letter


@functools.lru_cache(maxsize=4096)  # an object's paths repeat from object to object
def any_case(source: str) -> bool:
    """Whether a value recorded at ``source`` is a leak in any case: "Jane Doe" of "DOE^JANE".

    A value of an attribute removed for what it is (a name, an ID), not one removed for what
    it might hold (a description: "Scout" is no leak in a kept Scan Options "SCOUT MODE";
    a private element's), nor a shifted date.
    """
    return not source.startswith(SAME_PLACE) and precaution(source) is None


def _word_in(value: str, text: str) -> bool:
    """Whether ``value`` occurs in ``text`` as a word of its own.

    Not inside a longer run of letters: "MARY" in "PRIMARY", "GINA" in "ORIGINAL" are not
    the names. Digits need no such edge, nor wide letters (``values.wide``), whose scripts
    write no space between words: an ID inside "MRN12345" is still the ID, 山田 inside
    "山田太郎様" still the name.
    """
    at = text.find(value)
    while at != -1:
        end = at + len(value)
        before = _goes_on(value[0]) and at > 0 and _goes_on(text[at - 1])
        after = _goes_on(value[-1]) and end < len(text) and _goes_on(text[end])
        if not (before or after):
            return True
        at = text.find(value, at + 1)
    return False


def _goes_on(char: str) -> bool:
    """Whether a word goes on through ``char``: a letter of a script that spaces its words."""
    return char.isalpha() and not wide(char)


@functools.lru_cache(maxsize=8192)  # as _needles'
def _folded(value: str) -> str:
    """``value`` case-folded, as the texts it is searched for in."""
    return value.casefold()


@functools.lru_cache(maxsize=8192)  # as _needles'
def _low_needles(value: str) -> tuple[tuple[str, bytes], ...]:
    """``_needles`` with their ASCII letters in lower case (``bytes.lower``)."""
    return tuple((enc, needle.lower()) for enc, needle in _needles(value))


# A picture's data (a slice's, a scan's) is searched for values whose bytes never lie there
# by chance: compressed data holds a given 8 bytes once in 2^64 places (a 4-letter name,
# some four times a gigabyte). A needle counts with this many bytes that are not NUL (an
# ASCII value's UTF-16 is half NULs), of three kinds at least (no run of one digit).
DATA_MIN = 8


def _data_needles(value: str) -> tuple[tuple[str, bytes], ...]:
    """``_needles`` long enough to search a picture's data for (``DATA_MIN``).

    Not kept (``_needles`` are): a few needles told apart by their length.
    """
    return tuple(
        (enc, needle)
        for enc, needle in _needles(value)
        if len(needle) - needle.count(0) >= DATA_MIN and len(set(needle)) >= 3  # noqa: PLR2004
    )


@functools.lru_cache(maxsize=8192)  # a series' slices share most values: kept, in memory only
def _needles(value: str) -> tuple[tuple[str, bytes], ...]:
    """(encoding, bytes) of ``value`` in each encoding searched, long enough to count."""
    needles = []
    for enc in ("utf-8", "utf-16-le") if value.isascii() else ENCODINGS:
        # ASCII: the same bytes in every encoding here but UTF-16
        try:
            needle = value.encode(enc)
        except (UnicodeEncodeError, LookupError):
            continue
        if len(needle) >= MIN_LENGTH:
            needles.append((enc, needle))
    return tuple(needles)


def _spans(raw: bytes, generated: Collection[str], numbers: Iterable[str]) -> list[tuple[int, int]]:
    """Where in ``raw`` generated values, dummy values, kept numbers and standard UIDs lie."""
    spans = [m.span() for m in _STANDARD_UID.finditer(raw) if m[0].decode() in UID_dictionary]
    others: Iterable[str] = generated
    if isinstance(generated, Generated):
        spans += generated.spans(raw)
        others = generated.short
    for g in itertools.chain(others, MADE_UP, numbers):
        spans += _spans_of(raw, _ascii(g))
    return spans


# a UID under the standard's root, as written (``_by_chance``); its padding NUL is no part
_STANDARD_UID = re.compile(re.escape(STANDARD_UID_ROOT.encode()) + rb"[0-9.]*")


def _ascii(value: str) -> bytes:
    """How a generated or kept value is looked for in bytes."""
    return value.encode("ascii", "replace")


def _spans_of(raw: bytes, g_bytes: bytes) -> list[tuple[int, int]]:
    spans = []
    start = raw.find(g_bytes)
    while start != -1:
        spans.append((start, start + len(g_bytes)))
        start = raw.find(g_bytes, start + 1)
    return spans


class Generated(frozenset[str]):
    """Many values derived from the key (``find_leaks(generated=)``), found in one pass.

    Those of a whole archive's originals (``verify``'s pooled search). Where they lie in an
    output's bytes is looked for where a value of the original occurs there, and then for
    every one of them: as many searches of those bytes as there are pseudonyms. Here they are
    indexed by their last ``END`` characters, and one pass over the bytes finds where any of
    them ends (a look-up at each byte); the few shorter ones are searched for one by one
    (``short``), as are all of them where they are ``FEW``.
    """

    END = 8
    FEW = 64
    short: tuple[str, ...]
    _by_end: dict[bytes, tuple[bytes, ...]] | None

    def __new__(cls, values: Iterable[str] = ()) -> Self:  # noqa: D102 - as frozenset's
        made = super().__new__(cls, values)
        made.short = tuple(v for v in made if len(_ascii(v)) < cls.END)
        made._by_end = None
        return made

    def spans(self, raw: bytes) -> list[tuple[int, int]]:
        """Where in ``raw`` the values of ``END`` characters or more lie (every occurrence)."""
        if len(self) <= self.FEW:  # one search each is quicker
            return [s for v in self if v not in self.short for s in _spans_of(raw, _ascii(v))]
        by_end = self._index()
        end = self.END
        spans = []
        for at in range(len(raw) - end + 1):
            for g in by_end.get(raw[at : at + end], ()):
                start = at + end - len(g)
                if start >= 0 and raw[start : at + end] == g:
                    spans.append((start, at + end))
        return spans

    def _index(self) -> dict[bytes, tuple[bytes, ...]]:
        if self._by_end is None:  # built when first needed: most outputs never need it
            by_end: dict[bytes, tuple[bytes, ...]] = {}
            for v in self:
                g = _ascii(v)
                if len(g) >= self.END:
                    by_end[g[-self.END :]] = (*by_end.get(g[-self.END :], ()), g)
            self._by_end = by_end
        return self._by_end


def _outside(
    needle: bytes, raw: bytes, spans: list[tuple[int, int]], edges: tuple[int, int] = (0, 0)
) -> bool:
    """Whether one occurrence of ``needle`` in ``raw`` lies outside every span, as a word.

    ``edges``: the width in bytes of a letter before and after the needle that would make
    the occurrence part of a longer word (0: no such check). A one-byte letter with a NUL
    on its far side is no text but a byte of the element around: the next element's group
    in little endian ("r" and NUL: group 0072), or its value's length in big endian (NUL
    and "J": 74 bytes). Text has no NUL in it; taken for a word going on, it hid a value
    kept whole (an age "042Y" before group 0072 was not found).
    """
    at = raw.find(needle)
    while at != -1:
        end = at + len(needle)
        inside = any(s <= at and end <= e for s, e in spans)
        if not inside and not (
            _word_goes_on(raw, at - edges[0], edges[0], -1) or _word_goes_on(raw, end, edges[1], 1)
        ):
            return True
        at = raw.find(needle, at + 1)
    return False


def _word_goes_on(raw: bytes, at: int, width: int, step: int) -> bool:
    """Whether the letter at ``at``, beside a needle, continues its word.

    ``step``: -1 before the needle, 1 after it. A one-byte letter with a NUL beyond it
    (further from the needle) does not: it is a byte of a tag or of a length.
    """
    if not _letter(raw, at, width):
        return False
    beyond = at + step if step < 0 else at + width
    return width != 1 or not (0 <= beyond < len(raw) and raw[beyond] == 0)


def _letter(raw: bytes, at: int, width: int) -> bool:
    """Whether an ASCII letter of ``width`` bytes (1, or 2 in UTF-16) starts at ``at``."""
    if not width or at < 0 or at + width > len(raw):
        return False
    unit = raw[at : at + width]
    return unit[:1].isalpha() and unit[1:] == b"\x00" * (width - 1)


CACHES = (_needles, _low_needles, _folded, _texts_of, any_case)  # what work.clear_caches empties
