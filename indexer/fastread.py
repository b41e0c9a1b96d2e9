"""Explicit and implicit VR little endian files read without pydicom's element generator.

``dcmread`` spends most of a typical header's read time in its per-element machinery (a
generator with seeks, reads and checks for every element). For the common file (preamble,
file meta, a little endian data set, Pixel Data last) the elements are sliced
from the bytes already in memory here, into the same raw elements ``dcmread`` builds, and the
data set is assembled by pydicom's own constructors. Implicit VR little endian data sets (the
DICOM default, common in archives) are read the same way: their raw elements have no VR, as
``dcmread``'s have none. Anything unusual (no preamble, big endian, deflate, an unknown VR, a
command set, an undefined length other than a sequence's, a file cut short, an implicit VR
transfer syntax over explicit VR elements, ...) returns None and is left to ``dcmread``.

Tests compare the result with ``dcmread``'s, attribute by attribute, on every kind of file
the tests hold.
"""

from __future__ import annotations

import io
import struct
from collections.abc import MutableSequence

import pydicom.uid
from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_sequence
from pydicom.hooks import hooks
from pydicom.hooks import raw_element_value as pydicom_raw_element_value
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

from indexer.deid import rawvalue

_VRS = {vr.value.encode(): vr.value for vr in VR}  # the VRs pydicom reads as explicit
_LONG = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
_HEAD = struct.Struct("<HH2sH")
_LENGTH = struct.Struct("<L")
_UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
_STOP = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # where stop_before_pixels stops
# Binary values this long (a vendor's raw data in a private element) are views into the
# bytes read, as Pixel Data held in place is: a copy would double what an object holds.
# Nothing decodes them as text; they are written, hashed or removed as they are.
VIEW_FROM = 1 << 20
_VIEWED = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_IMPLICIT_LE = pydicom.uid.ImplicitVRLittleEndian
_NOT_READ_HERE = frozenset(
    {
        pydicom.uid.ExplicitVRBigEndian,
        pydicom.uid.DeflatedExplicitVRLittleEndian,
        *pydicom.uid.PrivateTransferSyntaxes,
    }
)


class _Irregular(Exception):  # noqa: N818 - "leave this file to dcmread"
    pass


def read(data: bytes) -> tuple[FileDataset, int] | None:
    """``dcmread(BytesIO(data), stop_before_pixels=True)``, and the offset it stopped at.

    None where the file is not the simple kind (then ``dcmread`` reads it).
    """
    if data[128:132] != b"DICM":
        return None
    try:
        meta_elements, pos = _elements(data, 132, meta=True)
        if not meta_elements or pos >= len(data):
            return None
        file_meta = FileMetaDataset(meta_elements)
        file_meta.set_original_encoding(
            is_implicit_vr=False, is_little_endian=True, character_encoding=default_encoding
        )
        # what dcmread asks of the file meta (and so converts) before it reads on
        file_meta[min(file_meta._dict)]  # noqa: SLF001
        if "FileMetaInformationGroupLength" in file_meta:
            file_meta.FileMetaInformationGroupLength  # noqa: B018
        ts = file_meta.get("TransferSyntaxUID")
        if ts is None or ts in _NOT_READ_HERE or data[pos : pos + 2] == b"\x00\x00":
            return None  # no transfer syntax, not little endian, deflated, a command set
        implicit = ts == _IMPLICIT_LE
        if implicit and _looks_explicit(data, pos):
            return None  # pydicom reads such a data set as explicit VR, and warns
        elements, stop = _implicit(data, pos) if implicit else _elements(data, pos, meta=False)
        # dcmread builds a Dataset of the elements first; FileDataset takes its elements over
        ds = FileDataset(io.BytesIO(data), elements, data[:128], file_meta, implicit, True)  # noqa: FBT003
        ds.set_original_encoding(implicit, True, ds._character_set)  # noqa: FBT003, SLF001
    except Exception:  # noqa: BLE001 - anything odd: dcmread reads it, and says what is wrong
        return None
    return ds, stop


def _elements(
    data: bytes,
    pos: int,
    *,
    meta: bool,
    end: int | None = None,
    encoding: str | MutableSequence[str] = default_encoding,
) -> tuple[dict[BaseTag, RawDataElement | DataElement], int]:
    """Elements from ``pos``: the file meta group, or the data set up to Pixel Data.

    With ``end``, a sequence item's elements, which end exactly there and do not stop at
    Pixel Data; ``encoding`` is then the parent's (for sequences of undefined length).
    Returns the elements and where reading stopped.
    """
    out: dict[BaseTag, RawDataElement | DataElement] = {}
    stops = _STOP if end is None and not meta else frozenset()
    end = len(data) if end is None else end
    while pos < end:
        if meta and data[pos : pos + 2] != b"\x02\x00":  # the file meta group ends
            break  # (before the head is read: the data set's may be implicit VR)
        tag, vr, length, start = _head(data, pos)
        if tag in stops:
            break
        if not meta and tag >> 16 in (2, 0xFFFE):
            raise _Irregular  # a group out of place
        key = BaseTag(tag)
        if length == _UNDEFINED:
            if vr != "SQ" or meta:
                raise _Irregular
            out[key], pos = _sequence(data, key, start, encoding)
            continue
        pos = start + length
        if pos > end:
            raise _Irregular  # cut short (or past its item's end): pydicom says how
        value = _value(data, vr, start, pos)
        if tag == _CHARSET:
            encoding = convert_encodings(convert_string(value or b"", True))  # type: ignore[arg-type]  # noqa: FBT003
        out[key] = RawDataElement(key, vr, length, value, start, False, True)  # type: ignore[arg-type]  # noqa: FBT003
    if pos > end:
        raise _Irregular  # a sequence of undefined length ran past its item's end
    return out, pos


def _looks_explicit(data: bytes, pos: int) -> bool:
    """Whether the first element's VR bytes are two capitals (pydicom's ``_is_implicit_vr``)."""
    vr = data[pos + 4 : pos + 6]
    return len(vr) < 2 or all(0x40 < b < 0x5B for b in vr)  # noqa: PLR2004 - "A" to "Z"


def _implicit(
    data: bytes,
    pos: int,
    *,
    end: int | None = None,
    encoding: str | MutableSequence[str] = default_encoding,
) -> tuple[dict[BaseTag, RawDataElement | DataElement], int]:
    """An implicit VR little endian data set's elements up to Pixel Data, and where it stopped.

    As ``dcmread`` reads them: no VR; a sequence of undefined length (the dictionary says SQ,
    or an unknown tag's value starts with an item) read by pydicom's ``read_sequence``. With
    ``end``, a sequence item's elements, as ``_elements`` reads an explicit VR one's.
    """
    out: dict[BaseTag, RawDataElement | DataElement] = {}
    stops = _STOP if end is None else frozenset()
    end = len(data) if end is None else end
    unpack = _ITEM_HEAD.unpack_from
    while pos < end:
        group, number, length = unpack(data, pos)
        tag = group << 16 | number
        if tag in stops:
            break
        if group in (2, 0xFFFE):
            raise _Irregular  # a group out of place
        key = BaseTag(tag)
        start = pos + 8
        if length == _UNDEFINED:
            if not _undefined_is_sequence(tag, data, start):
                raise _Irregular  # a value of undefined length: pydicom reads it
            out[key], pos = _sequence(data, key, start, encoding, implicit=True)
            continue
        pos = start + length
        if pos > end:
            raise _Irregular  # cut short: pydicom says how
        value = data[start:pos] if length else None  # (no VR: empty_value_for_VR gives None)
        if tag == _CHARSET:
            encoding = convert_encodings(convert_string(value or b"", True))  # noqa: FBT003
        out[key] = RawDataElement(key, None, length, value, start, True, True)  # noqa: FBT003
    if pos > end:
        raise _Irregular  # a sequence of undefined length ran past its item's end
    return out, pos


def _undefined_is_sequence(tag: int, data: bytes, start: int) -> bool:
    """Whether pydicom reads an implicit VR element of undefined length as a sequence."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return data[start : start + 4] == b"\xfe\xff\x00\xe0"  # an item follows


def _value(data: bytes, vr: str, start: int, end: int) -> bytes | memoryview | None:
    """An element's value as ``dcmread`` gives it raw; a large blob as a view (``VIEW_FROM``)."""
    if end - start > VIEW_FROM and vr in _VIEWED:
        return memoryview(data)[start:end]
    return data[start:end] if end > start else empty_value_for_VR(vr, raw=True)  # type: ignore[return-value]


def _head(data: bytes, pos: int) -> tuple[int, str, int, int]:
    """An explicit VR element's tag, VR, length and where its value starts.

    Unpacking past the end raises struct.error, an unknown VR _Irregular: both irregular.
    """
    group, number, vr_bytes, length = _HEAD.unpack_from(data, pos)
    vr = _VRS.get(vr_bytes)
    if vr is None:
        raise _Irregular  # not explicit VR
    if vr_bytes in _LONG:
        return group << 16 | number, vr, _LENGTH.unpack_from(data, pos + 8)[0], pos + 12
    return group << 16 | number, vr, length, pos + 8


def _sequence(
    data: bytes,
    key: BaseTag,
    start: int,
    encoding: str | MutableSequence[str],
    *,
    implicit: bool = False,
) -> tuple[DataElement, int]:
    """A sequence of undefined length, read by pydicom as dcmread reads it; and its end."""
    fp = io.BytesIO(data)
    fp.seek(start)
    seq = read_sequence(fp, implicit, True, _UNDEFINED, encoding)  # noqa: FBT003
    return DataElement(key, "SQ", seq, start, is_undefined_length=True), fp.tell()


_ITEM = 0xFFFEE000
_ITEM_HEAD = struct.Struct("<HHL")
# the conversions read here as they make them: ``work.configure_pydicom``'s
_HOOKS = (rawvalue.raw_element_vr, pydicom_raw_element_value)


def sequence(ds: Dataset, key: BaseTag) -> Sequence:
    """``ds[key].value`` for a sequence: a raw one of the simple kind is read here.

    The result, and the element left in ``ds``, are what pydicom's conversion makes of it
    (little endian items of defined length, explicit or implicit VR, no character set of
    their own, no private tag); anything else is converted by pydicom.
    """
    raw = ds._dict[key]  # noqa: SLF001
    if (
        type(raw) is RawDataElement
        and raw.VR == "SQ"
        and raw.is_implicit_VR in (False, True)
        and raw.is_little_endian is True
        and isinstance(raw.value, bytes)
        and raw.length == len(raw.value)
        and not (key >> 16) & 1
        and config.data_element_callback is None
        and (hooks.raw_element_vr, hooks.raw_element_value) == _HOOKS
        and not hooks.raw_element_kwargs
    ):
        encoding = ds.original_character_set or ds._character_set  # noqa: SLF001 - as pydicom
        try:
            items = _items(
                raw.value, raw.value_tell, encoding or [default_encoding], raw.is_implicit_VR
            )
        except Exception:  # noqa: BLE001 - anything odd: pydicom converts it, as it would
            items = None
        if items is not None:
            elem = DataElement(key, "SQ", items, raw.value_tell, False, already_converted=True)  # noqa: FBT003
            ds._dict[key] = elem  # noqa: SLF001 - as __setitem__ stores a public sequence
            ds._set_pixel_representation(elem)  # noqa: SLF001 - as __getitem__ does next
            return items
    seq: Sequence = ds[key].value
    return seq


def _items(
    value: bytes, offset: int, encoding: str | MutableSequence[str], implicit: bool = False
) -> Sequence | None:
    """The items of a sequence value, as ``read_sequence`` reads them; None if unusual."""
    out = []
    pos, end = 0, len(value)
    while pos < end:
        group, number, length = _ITEM_HEAD.unpack_from(value, pos)
        if group << 16 | number != _ITEM or length in (0, _UNDEFINED):
            return None  # not an item, an empty one (pydicom guesses its VR), undefined
        start = pos + 8
        if implicit:
            elements, stop = _implicit(value, start, end=start + length, encoding=encoding)
        else:
            elements, stop = _elements(
                value, start, meta=False, end=start + length, encoding=encoding
            )
        if stop != start + length or _CHARSET in elements:
            return None
        out.append(_item(elements, encoding, pos + offset, implicit))
        pos = stop
    seq = Sequence(out)
    seq.is_undefined_length = False
    return seq


def _item_state(implicit: bool) -> tuple[dict[str, object], tuple[str, ...]]:
    """What ``read_dataset`` leaves in an item's ``__dict__``, and its mutable parts."""
    item = Dataset({}, parent_encoding=default_encoding)
    item.set_original_encoding(implicit, True, default_encoding)  # noqa: FBT003
    item.is_undefined_length_sequence_item = False
    state = dict(vars(item))
    fresh = tuple(k for k, v in state.items() if isinstance(v, dict | list) and k != "_dict")
    return state, fresh


# (explicit VR, implicit VR)
_ITEM_STATES = (_item_state(False), _item_state(True))  # noqa: FBT003


def _item(
    elements: dict[BaseTag, RawDataElement | DataElement],
    encoding: str | MutableSequence[str],
    tell: int,
    implicit: bool = False,
) -> Dataset:
    """``Dataset(elements, parent_encoding=encoding)`` with what ``read_sequence_item`` sets.

    Its attributes are set in one step (``Dataset.__setattr__`` checks every name for a DICOM
    keyword); the state is taken from a Dataset pydicom made, so it follows pydicom's version.
    """
    item = Dataset.__new__(Dataset)
    state = item.__dict__
    template, fresh = _ITEM_STATES[implicit]
    state.update(template)
    for name in fresh:
        state[name] = state[name].copy()
    state["_dict"] = elements
    state["_parent_encoding"] = state["_read_charset"] = encoding
    state["seq_item_tell"] = state["file_tell"] = tell
    return item
