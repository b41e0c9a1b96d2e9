"""Encode a de-identified dataset as a file: the header, then the Pixel Data element.

The header (preamble, file meta, every element before Pixel Data) is what de-identification
changed and what the leak check scans; the pixel data value is carried across unchanged.

Elements de-identification did not touch are still pydicom ``RawDataElement``s: their value
bytes are written back as read, with no decoding and no re-encoding. Only the elements that
changed go through pydicom's writer. The result is byte for byte what pydicom's ``save_as``
writes; data sets that are not little endian (explicit or implicit VR, written as they were
read), or whose character set changed, are written by ``save_as`` itself.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from dataclasses import dataclass
from typing import TypeGuard

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import UID

from indexer.deid.rawvalue import (
    DEFAULT,
    LONG_LENGTH_VRS,
    SPECIFIC_CHARACTER_SET,
    charset_unchanged,
    left_as_read,
    text_of,
    value_of,
)
from indexer.spans import Span

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
TRANSFER_SYNTAX = 0x00020010
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2sHI")
_IMPLICIT = struct.Struct("<HHL")
_SHORT_MAX = 0xFFFF  # the largest length a 16-bit length field holds (PS3.5 7.1.2)


Buffer = bytes | memoryview | Span


@dataclass(frozen=True, slots=True)
class Encoded:
    """A file in parts: everything before Pixel Data, then the Pixel Data element.

    The pixel part may be a view into the source file's bytes, or a span of the source file
    itself (too large to hold): written out, never copied.
    """

    header: bytes
    pixels: tuple[Buffer, ...] = ()

    @property
    def parts(self) -> tuple[Buffer, ...]:
        """The file's bytes, in order."""
        return (self.header, *self.pixels)

    @property
    def data(self) -> bytes:
        """The whole file as one bytes object (a copy: for tests and small objects)."""
        return b"".join(p.read() if isinstance(p, Span) else p for p in self.parts)

    @property
    def size(self) -> int:
        """The file's length in bytes."""
        return sum(len(p) for p in self.parts)


def encode(ds: Dataset) -> Encoded:
    """Encode ``ds`` (file meta and preamble included) as header bytes plus pixel bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if _raw_copy_possible(ds):
            return _encode_raw(ds)
        if _writes_vrs(ds):
            _give_vrs(ds)
        return _encode_pydicom(ds)


def _writes_vrs(ds: Dataset) -> bool:
    """Whether the copy is explicit VR (big endian, deflated: pydicom writes it).

    pydicom then writes a VR for every element, and cannot write a raw one read without one
    (a damaged VR, read as implicit VR).
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None or TRANSFER_SYNTAX not in meta:
        return False
    return not UID(text_of(meta, TRANSFER_SYNTAX, DEFAULT, "UI")).is_implicit_VR


def _raw_copy_possible(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    if meta is None or TRANSFER_SYNTAX not in meta:
        return False
    ts = UID(text_of(meta, TRANSFER_SYNTAX, DEFAULT, "UI"))
    return (
        ts.is_little_endian
        and not ts.is_deflated
        and ds.original_encoding == (ts.is_implicit_VR, True)  # written as it was read
        and charset_unchanged(ds)  # what save_as checks
    )


def _encode_raw(ds: Dataset) -> Encoded:
    """Little endian, as read: raw elements as they are, the rest through pydicom."""
    implicit = ds.original_encoding[0] is True
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    fp.write(ds.preamble or b"\x00" * 128)
    fp.write(b"DICM")
    _write_meta(fp, ds.file_meta)
    encodings = (
        value_of(ds, SPECIFIC_CHARACTER_SET, DEFAULT) if SPECIFIC_CHARACTER_SET in ds else None
    ) or "iso8859"
    pixels: tuple[Buffer, ...] = ()
    for key, stored in sorted(ds._dict.items(), key=_by_tag):  # noqa: SLF001 - as stored
        tag = key.real  # a plain int: BaseTag compares in Python, int in C
        if tag & 0xFFFF == 0 and tag >> 16 > 6:  # noqa: PLR2004 - retired group lengths
            continue
        if isinstance(stored, RawDataElement) and not stored.VR and not implicit:
            # read as implicit VR although the transfer syntax is explicit (some writers do
            # this): VRs from the dictionary, ambiguous ones ("OB or OW") chosen by pydicom
            _give_vrs(ds)
            return _encode_pydicom(ds)
        if (
            isinstance(stored, RawDataElement)
            and tag != PIXEL_DATA
            and _plain_bytes(fp, tag, stored)
        ):
            continue
        elem = ds[key] if isinstance(stored, RawDataElement) and stored.value is None else stored
        if tag == PIXEL_DATA:
            span = getattr(elem, "value", None)
            if isinstance(span, Span):  # streamed from the source: items and delimiter too
                pixels = (_head_in(fp, tag, str(elem.VR).encode(), elem.length), span)  # type: ignore[union-attr]
            elif _is_plain_raw(elem, implicit):
                value = elem.value or b""
                pixels = (_head_in(fp, tag, (elem.VR or "").encode(), len(value)), value)
            elif items := _encapsulated(elem, implicit=implicit):  # written from its bytes
                head = _head(tag, str(elem.VR).encode(), UNDEFINED_LENGTH)
                pixels = (head, items, _SEQUENCE_END)
            else:
                buf = DicomBytesIO()
                buf.is_little_endian, buf.is_implicit_VR = True, implicit
                write_data_element(buf, _for_pydicom(elem), encodings)
                pixels = (buf.getvalue(),)
            continue
        _write_element(fp, elem, encodings)
    if pixels and max(map(int, ds._dict)) != PIXEL_DATA:  # noqa: SLF001 - elements after it
        return _encode_pydicom(ds)  # (in one piece)
    return Encoded(fp.getvalue(), pixels)


def _give_vrs(ds: Dataset) -> None:
    """Convert every raw element without a VR, items included, so that each has one.

    pydicom writes a raw element as it holds it, and cannot write one without a VR.
    """
    for key, stored in list(ds._dict.items()):  # noqa: SLF001 - as stored
        elem = ds[key] if isinstance(stored, RawDataElement) and not stored.VR else stored
        if isinstance(elem, DataElement) and elem.VR == "SQ":
            for item in elem.value or ():
                _give_vrs(item)


def _is_plain_raw(elem: object, implicit: bool = False) -> TypeGuard[RawDataElement]:
    return (
        isinstance(elem, RawDataElement)
        and elem.length != UNDEFINED_LENGTH
        and (implicit or bool(elem.VR))
    )


def _for_pydicom(elem: DataElement | RawDataElement) -> DataElement | RawDataElement:
    """``elem``, a view of its encapsulated frames made bytes, as pydicom's writer needs.

    It checks their first item with ``bytes.startswith`` (read in place, they are a view:
    ``_encapsulated`` writes them so; pydicom, where that does not).
    """
    if not isinstance(elem.value, memoryview) or not _undefined(elem):
        return elem
    if isinstance(elem, RawDataElement):
        return elem._replace(value=bytes(elem.value))
    elem.value = bytes(elem.value)
    return elem


def _undefined(elem: DataElement | RawDataElement) -> bool:
    """Whether ``elem`` is of undefined length."""
    if isinstance(elem, RawDataElement):
        return elem.length == UNDEFINED_LENGTH
    return elem.is_undefined_length


def _encapsulated(elem: object, *, implicit: bool) -> bytes | memoryview | None:
    """The items of encapsulated frames (Pixel Data of undefined length) in explicit VR.

    Written after its head, as pydicom's ``write_data_element`` writes them (its sequence
    delimiter after), but not copied into a buffer first (twice: a video object held was
    in memory four times). None for any other value: pydicom writes it, or refuses it.
    """
    if implicit or not isinstance(elem, RawDataElement | DataElement):
        return None
    value = elem.value
    if (
        not _undefined(elem)
        or elem.VR not in ("OB", "OW")
        or not isinstance(value, bytes | memoryview)
        or len(value) % 2
        or value[:4] != _ITEM
    ):
        return None
    return value


def _plain_bytes(fp: DicomBytesIO, tag: int, raw: RawDataElement) -> bool:
    """Write a raw element of defined length from its bytes; whether it was one.

    Not one: an undefined length, a value not read yet (deferred), no VR in explicit VR.
    """
    value, vr = raw.value, raw.VR
    if raw.length == UNDEFINED_LENGTH or (value is None and raw.length):
        return False
    if fp.is_implicit_VR:  # (a VR read, or none: not written)
        fp.write(_IMPLICIT.pack(tag >> 16, tag & 0xFFFF, len(value or b"")))
        if value:
            fp.write(value)
        return True
    if not vr:
        return False
    value = value or b""
    if len(value) > _SHORT_MAX and vr.encode() not in LONG_LENGTH_VRS:
        vr = "UN"  # too long for its VR's 16-bit length: written as UN, as pydicom writes it
    fp.write(_head_of(tag, vr, len(value)))
    fp.write(value)
    return True


@functools.lru_cache(maxsize=4096)  # the same tags, VRs and lengths object after object
def _head_of(tag: int, vr: str, length: int) -> bytes:
    return _head(tag, vr.encode(), length)


def _head_in(fp: DicomBytesIO, tag: int, vr: bytes, length: int) -> bytes:
    """An element's head as ``fp``'s encoding writes it (implicit VR: no VR)."""
    if fp.is_implicit_VR:
        return _IMPLICIT.pack(tag >> 16, tag & 0xFFFF, length)
    return _head(tag, vr, length)


def _head(tag: int, vr: bytes, length: int) -> bytes:
    if vr in LONG_LENGTH_VRS:
        return _LONG.pack(tag >> 16, tag & 0xFFFF, vr, 0, length)
    return _SHORT.pack(tag >> 16, tag & 0xFFFF, vr, length)


def _write_element(fp: DicomBytesIO, elem: object, encodings: object) -> None:
    """One element as pydicom's ``write_data_element`` writes it, raw ones from their bytes.

    A raw element without a VR (read as implicit VR inside an explicit VR data set, as
    some writers mix them) is converted first: its VR from the dictionary, as pydicom's.
    """
    if isinstance(elem, RawDataElement):
        if _plain_bytes(fp, elem.tag, elem):
            return
        elem = convert_raw_data_element(elem, encoding=encodings)  # type: ignore[arg-type]
    if isinstance(elem, DataElement) and elem.VR == "SQ" and _items_as_read(elem, fp):
        _write_sequence(fp, elem, convert_encodings(encodings))  # type: ignore[arg-type]
    else:
        write_data_element(fp, elem, encodings)  # type: ignore[arg-type]


def _items_as_read(elem: DataElement, fp: DicomBytesIO) -> bool:
    """Whether pydicom would write every item's elements as they are (no re-encoding)."""
    return all(
        item.original_encoding == (fp.is_implicit_VR, True)
        and item.original_character_set == item._character_set  # noqa: SLF001 - as pydicom checks
        for item in elem.value
    )


def _by_tag(item: tuple[int, object]) -> int:
    return item[0].real  # a plain int: BaseTag compares in Python, int in C


def _write_sequence(fp: DicomBytesIO, elem: DataElement, encodings: list[str]) -> None:
    """A sequence as pydicom writes it: its own lengths, or undefined ones as read."""
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, fp.is_implicit_VR
    for item in elem.value:
        inner = DicomBytesIO()
        inner.is_little_endian, inner.is_implicit_VR = True, fp.is_implicit_VR
        item_encodings = item.get("SpecificCharacterSet", encodings)
        for key, stored in sorted(item._dict.items(), key=_by_tag):  # noqa: SLF001
            tag = key.real
            if tag & 0xFFFF == 0 and tag >> 16 > 6:  # noqa: PLR2004 - retired group lengths
                continue
            if isinstance(stored, RawDataElement) and _plain_bytes(inner, tag, stored):
                continue
            _write_element(inner, item.get_item(key), item_encodings)
        data = inner.getvalue()
        if getattr(item, "is_undefined_length_sequence_item", False):
            body.write(_ITEM + _UNDEFINED + data + _ITEM_END)
        else:
            body.write(_ITEM + len(data).to_bytes(4, "little") + data)
    value = body.getvalue()
    if elem.is_undefined_length:
        fp.write(_head_in(fp, elem.tag, b"SQ", UNDEFINED_LENGTH) + value + _SEQUENCE_END)
    else:
        fp.write(_head_in(fp, elem.tag, b"SQ", len(value)) + value)


_ITEM, _UNDEFINED = b"\xfe\xff\x00\xe0", b"\xff\xff\xff\xff"
_ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
META_REQUIRED = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)
META_GROUP_LENGTH = 0x00020000
IMPLEMENTATION_VERSION_NAME = 0x00020013


def _write_meta(fp: DicomBytesIO, meta: FileMetaDataset) -> None:
    """File meta as pydicom's ``write_file_meta_info`` writes it (standard enforced).

    Meta of raw elements only, with every element the standard requires, is written here;
    any other is left to pydicom (which adds what is missing, or refuses).
    """
    tags = sorted(t for t in meta.keys() if t != META_GROUP_LENGTH)  # noqa: SIM118
    raws: dict[int, RawDataElement] = {t: e for t in tags if _is_plain_raw(e := meta.get_item(t))}
    if (
        len(raws) == len(tags)
        and all(t in raws and raws[t].length for t in META_REQUIRED)
        and IMPLEMENTATION_VERSION_NAME in raws
    ):
        body = b"".join(
            _head(t, (e.VR or "").encode(), len(e.value or b"")) + (e.value or b"")
            for t, e in raws.items()
        )
        fp.write(_SHORT.pack(2, 0, b"UL", 4) + len(body).to_bytes(4, "little") + body)
        return
    write_file_meta_info(fp, meta, enforce_standard=True)


def _encode_pydicom(ds: Dataset) -> Encoded:
    stored = ds._dict.get(BaseTag(PIXEL_DATA))  # noqa: SLF001 - as stored
    if isinstance(getattr(stored, "value", None), Span):  # pydicom writes bytes only
        ds._dict[BaseTag(PIXEL_DATA)] = held(stored)  # type: ignore[arg-type]  # noqa: SLF001
    elif stored is not None:
        ds._dict[BaseTag(PIXEL_DATA)] = _for_pydicom(stored)  # noqa: SLF001
    last = max(ds.keys()) if len(ds) else None
    if last != PIXEL_DATA:  # no pixel data, or elements after it: one piece
        return Encoded(_save(ds))
    elem = ds[PIXEL_DATA]
    del ds[PIXEL_DATA]
    try:
        header = _save(ds)
    finally:
        ds[PIXEL_DATA] = elem
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None:
        if ts.is_deflated:  # the whole data set is compressed: no split possible
            return Encoded(_save(ds))
        fp.is_little_endian, fp.is_implicit_VR = ts.is_little_endian, ts.is_implicit_VR
    write_data_element(fp, elem)
    return Encoded(header, (fp.getvalue(),))


def held(raw: RawDataElement) -> RawDataElement:
    """Pixel data streamed from its source (a ``Span``), read into memory after all."""
    data = raw.value.read()  # type: ignore[union-attr]
    if raw.length == UNDEFINED_LENGTH:  # pydicom writes the sequence delimiter itself
        data = data[:-8]
    return raw._replace(value=data)


def _save(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    with left_as_read(ds):
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
