"""Element values read from, and written as, little endian bytes, without pydicom.

pydicom turns each element it is asked for into a ``DataElement`` (about 15 µs each, most of a
slice's de-identification time). De-identification reads a few values and writes new ones,
so where the object is little endian, text values are decoded here straight from their
bytes, the way pydicom's converters decode them, and new values are encoded here the way
pydicom's writers encode them, into a ``Written`` raw element (its value's bytes are the
same in explicit and implicit VR). An implicit VR object's elements are first given the VRs
pydicom would read them by (``give_vrs``). Anything else (big endian, an element without a
VR, escape sequences, DS/IS/AT values, non-ASCII new text, ...) goes through pydicom:
``decode`` returns ``UNDECODED`` and ``encode`` returns None.

Tests check, on every element of the kitchen-sink object, that ``decode`` equals pydicom's
value and that files written from ``Written`` elements equal pydicom's, byte for byte.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import re
import struct
from collections.abc import Iterator, Sequence
from typing import Any, Final

import pydicom.config
from pydicom._dicom_dict import DicomDictionary
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.hooks import raw_element_vr as pydicom_raw_element_vr
from pydicom.tag import BaseTag
from pydicom.valuerep import VR

DEFAULT: Final = "latin_1"  # pydicom's default_encoding ("iso8859") for non-charset VRs
SPECIFIC_CHARACTER_SET = 0x00080005
ESC = 0x1B  # starts an ISO 2022 escape sequence: pydicom decodes those
# one (ISO 2022, 13.1): ESC, intermediate bytes, a final byte; in decoded text, one a reader
# did not know (pydicom leaves ESC ( J in), which another takes out: "Do", ESC ( J, "e" is "Doe"
ESCAPE_SEQUENCE = re.compile("\x1b[\x20-\x2f]+[\x30-\x7e]")
_MULTI = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})  # rstrip, then split
_TEXT = frozenset({"SH", "LO", "UC"})  # split, then rstrip each; in the character set
_SINGLE = frozenset({"ST", "LT", "UT"})  # one value, in the character set
CHARSET_VRS = frozenset({*_TEXT, *_SINGLE, "PN"})
TEXT_VRS = frozenset({*_MULTI, *CHARSET_VRS, "AE", "UR"})
NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
NUMBER_FORMATS |= {"SV": "q", "UV": "Q"}
# the VRs whose values are numbers: the binary ones above and the decimal strings IS and DS
NUMBER_VRS = frozenset(NUMBER_FORMATS) | {"IS", "DS"}


class UnfitLengthError(Exception):
    """An element whose length is no whole number of its VR's values (``BytesLengthException``).

    Damage: most often of its length, so that it swallowed the elements after it. Its tag
    and length are told (neither is identifying), never its bytes.
    """

    def __init__(self, tag: int, vr: str, length: int) -> None:
        size = NUMBER_SIZES.get(vr)
        values = f"{size}-byte values" if size else "values"
        super().__init__(
            f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} is {length} bytes long, "
            f"no whole number of its {values} (a damaged length)"
        )


def unfit_length(tag: int, stored: object) -> UnfitLengthError:
    """``UnfitLengthError`` of element ``tag`` as stored (its ``BytesLengthException``)."""
    value = getattr(stored, "value", None)
    length = len(value) if isinstance(value, bytes | memoryview) else 0
    return UnfitLengthError(tag, str(getattr(stored, "VR", None)), length)


# What turning a malformed element into its value raises, here or in pydicom (which converts
# elements when first asked): a bad value (ValueError, ...), an unknown VR
# (NotImplementedError), a length that is no multiple of the value's size
# (BytesLengthException; ``UnfitLengthError`` where it is told by its tag), a sequence cut
# short (OSError, struct.error), nesting too deep (RecursionError). Their text can quote
# values: catch, keep the type name only.
ELEMENT_ERRORS: Final = (
    ValueError,
    TypeError,
    LookupError,
    OverflowError,
    AttributeError,
    NotImplementedError,
    RecursionError,
    OSError,
    struct.error,
    BytesLengthException,
    UnfitLengthError,
)


def element_problem(e: BaseException, doing: str = "read") -> str:
    """What an ``ELEMENT_ERRORS`` exception says of the element, in words and its type's name.

    Never its text, which can quote the value. ``doing``: what could not be done to a value
    ("read", "written").
    """
    if isinstance(e, UnfitLengthError):
        return str(e)
    if isinstance(e, NotImplementedError):
        what = "an element has an unknown value representation"
    elif isinstance(e, BytesLengthException):
        what = "an element's length does not fit its value representation"
    elif isinstance(e, RecursionError):
        what = "sequences are nested too deep"
    elif isinstance(e, OSError | struct.error) and doing == "read":
        what = "a sequence is cut short or malformed"  # (pydicom's writer wraps all in OSError)
    else:
        what = f"an element holds a value that cannot be {doing}"
    name = "struct.error" if isinstance(e, struct.error) else type(e).__name__  # not "error"
    return f"{what} ({name})"


BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
LONG_LENGTH_VRS = frozenset(  # explicit VR: 2 reserved bytes, then a 4-byte length (PS3.5 7.1.2)
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)


class _Undecoded:
    def __repr__(self) -> str:
        return "UNDECODED"


UNDECODED: Final = _Undecoded()


class Written(RawDataElement):
    """A raw element de-identification wrote: new bytes, not the bytes read.

    Still a ``RawDataElement``: pydicom decodes it on access and the encoder writes its bytes
    as they are, but the leak check knows it changed.
    """

    __slots__ = ()


class Marking(Written):
    """An element of the PS3.15 marking every copy gets (the same constant bytes each time).

    Nothing of the original is in it: the leak check does not decode it again for each copy
    (its bytes are still searched with the rest of the header).
    """

    __slots__ = ()


# What a public attribute written as UN, OB or OW is read as, by its data dictionary VR: the
# text VRs (numbers as text among them: their bytes have no byte order), and sequences (UN).
_READ_AS_KNOWN = TEXT_VRS | {"DS", "IS"}
_NONE: frozenset[int] = frozenset()
AS_BYTES = frozenset({"UN", "OB", "OW"})  # VRs that hold bytes (OW: in little endian as they are)
# the binary numbers' sizes, in bytes
NUMBER_SIZES: Final = {
    "AT": 4,
    "FL": 4,
    "FD": 8,
    "SL": 4,
    "SS": 2,
    "SV": 8,
    "UL": 4,
    "US": 2,
    "UV": 8,
}
KNOWN_VRS = frozenset(vr.value for vr in VR if " " not in vr.value)  # as the standard has them
# the control codes no character set has (ESC, TAB, LF, FF and CR are some's): in a text
# element's value, trailing NUL and space padding aside, the value is damaged, or no text
CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
# VRs no text attribute has, under which its text is still its bytes: a damaged VR
_NOT_TEXT = frozenset(AS_BYTES | NUMBER_SIZES.keys() | {"OD", "OF", "OL", "OV", "DS", "IS"})
_META_GROUP = 0x0002  # the file meta's elements (PS3.10 7.1)
_PRIVATE_CREATORS = (0x0010, 0x00FF)  # their element numbers: each an LO (PS3.5 7.8.1)


@functools.lru_cache(maxsize=4096)
def _dictionary_vrs(tag: int) -> tuple[str, ...]:
    """The VRs the data dictionary gives ``tag``; () for a tag it does not know."""
    try:
        return tuple(str(dictionary_VR(tag)).split(" or "))
    except KeyError:
        return ()


def read_as_known(d: Dataset) -> frozenset[int]:
    """Give each public element of ``d`` written in a VR it cannot have its dictionary VR.

    Some systems write known attributes as UN (an implicit VR object made explicit without a
    data dictionary), some as OB or OW (a name or a date as bytes). Judged as such, the
    element is decided by its tag alone and kept as bytes: a sequence with names in its
    items, a person's name the table does not list; and a pseudonym or dummy written into it
    could not be encoded (the object was lost, as ``encode_failed``). Read by its dictionary
    VR, it is judged, walked and written as any other. A UN value is implicit VR little
    endian whatever the transfer syntax (PS3.5 6.2.2), so a UN sequence is read as one; one
    written under another VR of bytes (OB, OD, a binary number's) is read as one in the file's
    own encoding, as its items were written: kept as bytes, its items went unwalked, and a
    name in one into the copy, unrecorded by the leak check. OW is read as text in a big
    endian object too: text has no byte order, and a value a converter swapped as words
    would read as other text, judged and replaced as the attribute is (a UID under OW,
    stayed bytes, got a pseudonym of its printed bytes that OW could not hold). Numbers and
    other bytes stay as they are: their byte order may be the file's, and the table decides them by
    tag. A value too long for its VR's 16-bit length is written as UN again (``encode``).
    A damaged VR ("UI" became "SL", or a VR no edition defines) is read by the dictionary
    VR too: a text attribute's bytes are its text, which no number VR could write again, and
    a number's are in the file's byte order whatever its VR, so it is read as the number it
    is where its bytes make whole ones of the dictionary VR (and, under another number VR,
    none of that VR: "US" became "FD" over 2 bytes; under a text VR, no text: a control code
    in them, as Bits Allocated 16 has). A private creator is an LO, whatever VR
    it was written in: pydicom reads it for every element of its block, and one it cannot
    read left the block's values unread. Implicit VR elements have no VR yet, or the one
    ``give_vrs`` gave them: the dictionary's, which leaves nothing to do here. A file meta
    element or the Specific Character Set is given its own VR whatever VR it was written in,
    a text VR or SQ too, as pydicom's reading gives it (``raw_element_vr``): judged by the
    VR written, a sequence's items were a UID's characters. A private element without a VR
    (implicit VR) or under UN, OB or OW whose bytes begin as a sequence's items is read as
    the sequence (``_private_items``), so a block kept by the safe-private list or a site
    rule is walked.
    Returns the tags of the elements given a VR (a value not valid for it is damaged).
    """
    read_as: set[int] = set()
    for key, raw in list(d._dict.items()):  # noqa: SLF001 - as stored, not converted
        if type(raw) is not RawDataElement or raw.value is None:
            continue
        if raw.VR in _ITEMS_UNDER and _private_items(key.real, raw.value):
            ways = (
                _UN_ITEMS
                if raw.VR in _NO_VR
                else ((raw.is_implicit_VR, raw.is_little_endian), *_UN_ITEMS)
            )
            d._dict[key] = _as_sequence(raw, ways)  # noqa: SLF001
            continue
        if (
            not raw.VR
            # a text VR (or SQ): kept, but by a number attribute (a damaged VR byte: judged
            # below), and but by an element pydicom reads by its own VR (``raw_element_vr``)
            or (
                raw.VR not in _NOT_TEXT
                and raw.VR in KNOWN_VRS
                and key not in _number_tags()
                and key >> 16 != _META_GROUP
                and key != SPECIFIC_CHARACTER_SET
            )
        ):
            continue
        tag = key.real
        if (tag >> 16) & 1:  # private: decided by its block, never read by a guessed VR,
            if _is_private_creator(tag):  # but its creator
                d._dict[key] = raw._replace(VR="LO")  # noqa: SLF001 - LO by definition
                read_as.add(tag)
            continue
        known = _dictionary_vrs(tag)
        if known and known[0] == "SQ" and raw.VR == "UN":
            d._dict[key] = raw._replace(VR="SQ", is_implicit_VR=True, is_little_endian=True)  # noqa: SLF001
        elif known and known[0] == "SQ":  # items under another VR of bytes
            ways = ((raw.is_implicit_VR, raw.is_little_endian), *_UN_ITEMS)
            d._dict[key] = _as_sequence(raw, ways)  # noqa: SLF001
            read_as.add(tag)
        elif vr := _damaged_as(raw, known):
            d._dict[key] = raw._replace(VR=vr)  # noqa: SLF001
            read_as.add(tag)
    return frozenset(read_as) if read_as else _NONE


_UN_ITEMS = ((True, True),)  # a sequence's items under UN: implicit VR little endian
_NO_VR = frozenset({None, "", "UN"})  # implicit VR, or a VR unknown: items as under UN
_ITEMS_UNDER = _NO_VR | {"OB", "OW"}  # where a private sequence's items may lie as bytes
_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000), as UN's items begin


def _private_items(tag: int, value: bytes) -> bool:
    """Whether a private element without a VR, or under UN, OB or OW, holds a sequence's items.

    An implicit VR object's private elements have no VR (their VRs lie in a private
    dictionary), and an object made explicit without one writes them as UN (or OB). Kept as bytes
    (by a site rule, or on the safe-private list), a sequence's items went unwalked: a
    patient's name in one went into the copy, and the leak check never saw it.
    """
    return bool(tag >> 16 & 1) and value[:4] == _ITEM_TAG and not _is_private_creator(tag)


def _as_sequence(raw: RawDataElement, ways: tuple[tuple[bool, bool], ...]) -> RawDataElement:
    """An element's bytes, written under a VR of bytes or none, as the sequence they make.

    Read each of ``ways`` (implicit VR?, little endian?) in turn: a sequence attribute's
    items as the file's elements are written, or as implicit VR little endian (as under
    UN, a converter that knew no VRs), the first way in which every element of them reads.
    Bytes that read in none are no value: an empty sequence (kept as bytes, its items' names
    went into the copy unread).
    """
    for implicit, little in ways:
        sequence = raw._replace(VR="SQ", is_implicit_VR=implicit, is_little_endian=little)
        try:
            _read_whole(convert_raw_data_element(sequence).value)
        except ELEMENT_ERRORS:
            continue
        return sequence
    return raw._replace(VR="SQ", value=b"", length=0)


def _read_whole(items: Sequence[Dataset]) -> None:
    """Read every element of ``items`` (converted as each is given), at any depth."""
    for item in items:
        for element in item:
            if element.VR == "SQ":
                _read_whole(element.value)


def give_vrs(d: Dataset) -> None:
    """Give an implicit VR data set's raw elements the VRs pydicom would read them by.

    The data dictionary's VR where it gives one (pydicom settles an ambiguous one, "US or
    SS", from other elements: it converts those), LO for a private creator; other private
    elements (their VRs lie in a private dictionary, by their creator's value) keep none.
    With a VR, a value is decoded (``decode``) and its index JSON made as an explicit VR
    one's are, without pydicom's element objects; it is still written without its VR.
    """
    if d.original_encoding[0] is not True:
        return
    stored = d._dict  # noqa: SLF001 - as stored, not converted
    for key, raw in list(stored.items()):
        if type(raw) is RawDataElement and raw.VR is None and (vr := _implicit_vr(key.real)):
            stored[key] = raw._replace(VR=vr)


@functools.lru_cache(maxsize=4096)
def _implicit_vr(tag: int) -> str | None:
    if (tag >> 16) & 1:  # private: a creator is an LO (PS3.5 7.8.1)
        return "LO" if _is_private_creator(tag) else None
    known = _dictionary_vrs(tag)
    return known[0] if len(known) == 1 else None


def _is_private_creator(tag: int) -> bool:
    """Whether a private tag's element number is a creator's (PS3.5 7.8.1)."""
    return _PRIVATE_CREATORS[0] <= tag & 0xFFFF <= _PRIVATE_CREATORS[1]


def _damaged_as(raw: RawDataElement, known: tuple[str, ...]) -> str | None:
    """The dictionary VR (of ``known``) to read ``raw``'s bytes by, or None to keep its own.

    None for an element in no dictionary (removed as non-standard), of a VR it may have, or
    whose bytes would not be a value of its dictionary VR.
    """
    if not known or raw.VR in known:
        return None
    if known[0] in _READ_AS_KNOWN or _misnumbered(raw, known[0]):
        return known[0]
    return None


def raw_element_vr(raw: RawDataElement, data: dict[str, Any], **kwargs: Any) -> None:  # noqa: ANN401
    """The ``raw_element_vr`` hook: pydicom's, and elements it reads for itself by their VRs.

    pydicom converts the file meta's elements and the Specific Character Set inside its own
    reading, to learn how to read on (the transfer syntax) and how to decode text (the
    character set): before ``read_as_known`` could give them their VRs. Each has one VR; one
    written under a VR that is not its own (a damaged VR byte: the Transfer Syntax UID as SL)
    is read by its own here, as ``read_as_known`` reads any other attribute, so a copy's file
    meta names its transfer syntax, a big endian object is read as one, and text is decoded
    in the character set named. ``work.configure_pydicom`` registers it; both readers (and
    ``fastread``'s items) convert through it.
    """
    pydicom_raw_element_vr(raw, data, **kwargs)
    tag = raw.tag
    if (
        (tag >> 16 == _META_GROUP or tag == SPECIFIC_CHARACTER_SET)
        and raw.VR
        and raw.value is not None
        and (vr := _damaged_as(raw, _dictionary_vrs(tag)))
    ):
        data["VR"] = vr


def _misnumbered(raw: RawDataElement, vr: str) -> bool:
    """Whether ``raw``'s bytes make whole numbers of ``vr``, and none of its own damaged VR.

    Under a text VR, whether they are no text: they hold a control code no character set
    has (Bits Allocated 16 is the bytes 10 00).
    """
    known, n = NUMBER_SIZES.get(vr), len(raw.value or b"")
    if known is None or n % known:
        return False
    if raw.VR not in KNOWN_VRS:  # a VR no edition defines
        return True
    if raw.VR in TEXT_VRS:
        return CONTROL.search(bytes(raw.value or b"").rstrip(b"\x00 ")) is not None
    size = NUMBER_SIZES.get(raw.VR or "")
    return size is not None and n % size != 0


@functools.cache
def _number_tags() -> frozenset[int]:
    """The tags the data dictionary gives a binary number VR (the first, where it gives two)."""
    return frozenset(
        tag for tag, entry in DicomDictionary.items() if entry[0].split(" or ")[0] in NUMBER_SIZES
    )


def codec(ds: Dataset) -> str | None:
    """The codec to read ``ds``'s text with, or None where pydicom must do the decoding.

    None unless ``ds`` was read as little endian (explicit VR, or implicit VR: its elements
    given their VRs, ``give_vrs``) with pydicom's default settings. Text without escape
    sequences is in the first character set (as pydicom reads it).
    """
    if ds.original_encoding[1] is not True or pydicom.config.datetime_conversion:
        return None
    if pydicom.config.use_none_as_empty_text_VR_value:
        return None
    charsets = value_of(ds, SPECIFIC_CHARACTER_SET, DEFAULT) if SPECIFIC_CHARACTER_SET in ds else ""
    try:
        encodings = convert_encodings(charsets or None)
        return codecs.lookup(encodings[0]).name
    except (LookupError, IndexError, TypeError, ValueError):
        return None


def charset_unchanged(ds: Dataset) -> bool:
    """Whether ``ds``'s Specific Character Set is still the one it was read with."""
    if SPECIFIC_CHARACTER_SET not in ds:
        return not ds.original_character_set or ds.original_character_set == ds._character_set  # noqa: SLF001
    raw = ds.get_item(SPECIFIC_CHARACTER_SET)
    if isinstance(raw, RawDataElement) and not isinstance(raw, Written):
        return True  # untouched since it was read
    return ds.original_character_set == ds._character_set  # noqa: SLF001 - as pydicom checks


UNDEFINED_LENGTH: Final = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010


def undefined_length(raw: object, vr: str, tag: int) -> bool:
    """Whether ``raw``, as read, is of undefined length where PS3.5 allows none.

    Only a sequence (SQ, or UN: one whose VR was unknown) and encapsulated Pixel Data (OB or
    OW) may be (PS3.5 7.1.1, A.4). Any other is a damaged element: a reader takes whatever
    follows it, to the next sequence delimiter, as its value (a video's frames under Bits
    Allocated, its Pixel Data tag damaged).
    """
    return (
        type(raw) is RawDataElement
        and raw.length == UNDEFINED_LENGTH
        and vr not in ("SQ", "UN")
        and not (tag == _PIXEL_DATA and vr in ("OB", "OW"))
    )


def vr_of(raw: Any, tag: int) -> str:  # noqa: ANN401
    """An element's VR; from the dictionary where the file gave none (implicit VR)."""
    vr = raw.VR
    if type(vr) is str and len(vr) == 2:  # noqa: PLR2004 - the common case, as read
        return vr
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    return str(vr).split(" or ")[0]


@contextlib.contextmanager
def left_as_read(ds: Dataset) -> Iterator[None]:
    """Within, pydicom may convert ``ds``'s raw elements in place; after, they are raw again.

    pydicom's writer reads the SOP Class and Instance UIDs (``save_as`` checks them against
    the file meta), and reading converts them in place. The leak check knows the elements
    kept as read by their being raw still (``verify._Kept``): converted, a kept UID looked
    changed, and a private copy of it a leak. The values are the same either way.
    """
    stored = ds._dict  # noqa: SLF001 - as stored, not converted
    raws = [(key, raw) for key, raw in stored.items() if isinstance(raw, RawDataElement)]
    try:
        yield
    finally:
        for key, raw in raws:
            if isinstance(stored.get(key), DataElement):
                stored[key] = raw


def element(ds: Dataset, tag: int) -> DataElement:
    """``ds[tag]``, but a raw element's conversion is not stored back in ``ds``.

    The leak check (``verify._Kept``) knows the elements kept as read by their being raw
    still. Converted in place, as ``ds[tag]`` converts them, they would look changed to it:
    where a value is decoded by pydicom only (big endian, no VR), a kept UID read for the
    identity map, or a description kept whole elsewhere, made a private copy of it a leak,
    and the verdict hung on the order of the reads.
    """
    raw = ds._dict.get(tag)  # type: ignore[call-overload]  # noqa: SLF001 - get_item converts
    if not isinstance(raw, RawDataElement) or raw.value is None:
        return ds[tag]  # converted already (or to be read from a file: pydicom's way)
    charset = (
        default_encoding
        if tag == SPECIFIC_CHARACTER_SET
        else ds.original_character_set or ds._character_set  # noqa: SLF001 - as ds[tag] does
    )
    return convert_raw_data_element(raw, encoding=charset, ds=ds)


def text_of(ds: Dataset, tag: int, codec: str | None, vr: str | None = None) -> str:
    """Element ``tag`` of ``ds`` as stripped text, as ``str`` of pydicom's value gives it.

    "" when the element is absent or empty, or a sequence (no text: a damaged tag put one
    under a UID's, say). Multiple values print as pydicom prints them.
    """
    raw = ds._dict.get(tag)  # type: ignore[call-overload]  # noqa: SLF001 - get_item converts
    if raw is None or raw.VR == "SQ":
        return ""
    if (
        codec is not None
        and isinstance(raw, RawDataElement)
        and type(raw.value) is bytes
        and len(raw.value) <= _KEPT_TEXT
        and type(raw.VR) is str
        and (vr is None or vr == raw.VR)
    ):
        text = _text(raw.VR, raw.value, codec)
        if text is not None:
            return text
    value = value_of(ds, tag, codec, vr) if codec is not None else None
    if codec is None or isinstance(value, list):  # pydicom's MultiValue prints its own way
        value = element(ds, tag).value
    return "" if value is None else str(value).strip()


_KEPT_TEXT = 256  # bytes: identifiers, names, dates, codes; longer ones seldom repeat


@functools.lru_cache(maxsize=4096)  # a series' slices share most values: kept, in memory only
def _text(vr: str, data: bytes, codec: str) -> str | None:
    """``text_of`` of a single-valued element with these bytes; None: not single-valued."""
    value = decode_bytes(vr, data, codec)
    if value is UNDECODED or isinstance(value, list):
        return None
    return "" if value is None else str(value).strip()


def decode_bytes(vr: str, data: bytes, charset: str) -> Any:  # noqa: ANN401
    """``decode`` of an element's value bytes alone (for values kept by their bytes)."""
    return decode(RawDataElement(BaseTag(0), vr, len(data), data, 0, False, True), vr, charset)  # noqa: FBT003


def value_of(ds: Dataset, tag: int, codec: str | None, vr: str | None = None) -> Any:  # noqa: ANN401
    """The value of element ``tag`` of ``ds``, decoded here where ``codec`` allows.

    ``codec`` is ``codec(ds)`` of the object (None: pydicom decodes, and keeps the element).
    """
    if codec is not None:
        raw = ds._dict.get(tag)  # type: ignore[call-overload]  # noqa: SLF001 - get_item converts
        if isinstance(raw, RawDataElement) and raw.value is not None:
            value = decode(raw, vr or vr_of(raw, tag), codec)
            if value is not UNDECODED:
                return value
    try:
        return ds[tag].value
    except BytesLengthException:  # its text quotes the bytes: told by tag and length
        raise unfit_length(tag, ds._dict.get(tag)) from None  # type: ignore[call-overload]  # noqa: SLF001


def decode(raw: RawDataElement, vr: str, charset: str) -> Any:  # noqa: ANN401, C901
    """The value pydicom would give ``raw`` (str, list of str, numbers, bytes), or UNDECODED.

    ``charset`` is ``codec(ds)`` of the data set holding ``raw``.
    """
    data = raw.value
    if vr != raw.VR or not isinstance(data, bytes | memoryview):
        return UNDECODED
    if vr in BYTES_VRS:  # as held: a large blob is a view into the bytes read (``fastread``)
        return data or None
    data = bytes(data)
    if vr in TEXT_VRS:
        if not data:
            return ""
        if ESC in data:
            return UNDECODED
        if vr == "PN":  # pydicom strips the bytes before decoding, and no value after
            data = data.rstrip(b"\x00 ")
        try:
            text = data.decode(charset if vr in CHARSET_VRS else DEFAULT, "strict")
        except (UnicodeDecodeError, LookupError):
            return UNDECODED
        if vr in _MULTI:
            return _one_or_list(text.rstrip(" \x00").split("\\"))
        if vr in _TEXT:
            return _one_or_list([v.rstrip("\x00 ") for v in text.split("\\")])
        if vr in _SINGLE:
            return text.rstrip("\x00 ")
        if vr == "PN":
            return _one_or_list(text.split("\\"))
        if vr == "AE":
            return _one_or_list([v.strip() for v in text.split("\\")])
        return text.rstrip()  # UR
    fmt = NUMBER_FORMATS.get(vr)
    if fmt is not None:
        if not data:
            return None
        size = struct.calcsize(f"<{fmt}")  # standard sizes, as unpacked ("l" is 8 natively)
        if len(data) % size:
            return UNDECODED
        return _one_or_list(list(struct.unpack(f"<{len(data) // size}{fmt}", data)))
    return UNDECODED


def _one_or_list(values: list[Any]) -> Any:  # noqa: ANN401
    return values[0] if len(values) == 1 else values


def encode(tag: int, vr: str, value: object) -> Written | None:
    """``value`` written as pydicom writes it, as a ``Written`` raw element; None if not here.

    Handles ASCII text (one value or a list), a single number or None, and empty bytes.
    """
    data = _bytes(vr, value)
    if data is None:
        return None
    return Written(BaseTag(tag), vr, len(data), data, 0, False, True)  # noqa: FBT003


def written(elem: DataElement, *, implicit: bool = False) -> Marking:
    """``elem`` as pydicom writes it (little endian, explicit or implicit VR), as a ``Marking``.

    For values built once and shared by every object (a frozen tuple, safe to share). Only a
    sequence's bytes differ between the two: its items' elements have VRs in explicit VR.
    """
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_data_element(fp, elem, [DEFAULT])
    data = fp.getvalue()
    head = 12 if not implicit and data[4:6] in LONG_LENGTH_VRS else 8
    value = data[head:]
    return Marking(BaseTag(elem.tag), elem.VR, len(value), value, 0, implicit, True)  # noqa: FBT003


def _bytes(vr: str, value: object) -> bytes | None:
    if vr in TEXT_VRS:
        return _text_bytes(vr, value)
    fmt = NUMBER_FORMATS.get(vr)
    if fmt is not None:
        if value is None:
            return b""
        if type(value) not in (int, float):
            return None
        try:
            return struct.pack(f"<{fmt}", value)
        except struct.error:
            return None
    if vr in BYTES_VRS and value == b"":
        return b""
    return None


def _text_bytes(vr: str, value: object) -> bytes | None:
    if value is None:
        return b""
    if isinstance(value, list) and all(type(v) is str for v in value):
        text = "\\".join(value)
    elif type(value) is str:
        text = value
    else:
        return None
    if not text.isascii():
        return None
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return data


CACHES = (_text,)  # what work.clear_caches empties
