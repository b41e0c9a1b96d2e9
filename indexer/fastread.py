"""Explicit VR little endian files read without pydicom's element generator.

``dcmread`` spends most of a typical header's read time in its per-element machinery (a
generator with seeks, reads and checks for every element). For the common file (preamble,
file meta, an explicit VR little endian data set, Pixel Data last) the elements are sliced
from the bytes already in memory here, into the same raw elements ``dcmread`` builds, and the
data set is assembled by pydicom's own constructors. Anything unusual (no preamble, implicit
VR, big endian, deflate, an unknown VR, a command set, an undefined length other than a
sequence's, a file cut short, ...) returns None and is left to ``dcmread``.

Tests compare the result with ``dcmread``'s, attribute by attribute, on every kind of file
the tests hold.
"""

from __future__ import annotations

import io
import struct

import pydicom.uid
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    empty_value_for_VR,
)
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.filereader import read_sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

_VRS = {vr.value.encode(): vr.value for vr in VR}  # the VRs pydicom reads as explicit
_LONG = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
_HEAD = struct.Struct("<HH2sH")
_LENGTH = struct.Struct("<L")
_UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
_STOP = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # where stop_before_pixels stops
_NOT_EXPLICIT_LE = frozenset(
    {
        pydicom.uid.ImplicitVRLittleEndian,
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
        if ts is None or ts in _NOT_EXPLICIT_LE or data[pos : pos + 2] == b"\x00\x00":
            return None  # no transfer syntax, not explicit VR little endian, a command set
        elements, stop = _elements(data, pos, meta=False)
        # dcmread builds a Dataset of the elements first; FileDataset takes its elements over
        ds = FileDataset(io.BytesIO(data), elements, data[:128], file_meta, False, True)  # noqa: FBT003
        ds.set_original_encoding(False, True, ds._character_set)  # noqa: FBT003, SLF001
    except Exception:  # noqa: BLE001 - anything odd: dcmread reads it, and says what is wrong
        return None
    return ds, stop


def _elements(
    data: bytes, pos: int, *, meta: bool
) -> tuple[dict[BaseTag, RawDataElement | DataElement], int]:
    """Elements from ``pos``: the file meta group, or the data set up to Pixel Data.

    Returns the elements and where reading stopped.
    """
    out: dict[BaseTag, RawDataElement | DataElement] = {}
    encoding: str | list[str] = default_encoding  # for sequences of undefined length
    end = len(data)
    while pos < end:
        group, number, vr_bytes, length = _HEAD.unpack_from(data, pos)
        if meta and group != 2:  # noqa: PLR2004 - the file meta group
            break
        tag = group << 16 | number
        vr = _VRS.get(vr_bytes)
        if vr is None or (group in (2, 0xFFFE) and not meta):
            raise _Irregular  # not explicit VR, or a group out of place
        if vr_bytes in _LONG:  # (unpacking past the end raises struct.error: irregular too)
            length = _LENGTH.unpack_from(data, pos + 8)[0]
            start = pos + 12
        else:
            start = pos + 8
        if not meta and tag in _STOP:
            break
        key = BaseTag(tag)
        if length == _UNDEFINED:
            if vr != "SQ" or meta:
                raise _Irregular
            out[key], pos = _sequence(data, key, start, encoding)
            continue
        pos = start + length
        if pos > end:
            raise _Irregular  # cut short: dcmread says how
        value = data[start:pos] if length else empty_value_for_VR(vr, raw=True)
        if tag == _CHARSET:
            encoding = convert_encodings(convert_string(value or b"", True))  # type: ignore[arg-type]  # noqa: FBT003
        out[key] = RawDataElement(key, vr, length, value, start, False, True)  # type: ignore[arg-type]  # noqa: FBT003
    return out, pos


def _sequence(
    data: bytes, key: BaseTag, start: int, encoding: str | list[str]
) -> tuple[DataElement, int]:
    """A sequence of undefined length, read by pydicom as dcmread reads it; and its end."""
    fp = io.BytesIO(data)
    fp.seek(start)
    seq = read_sequence(fp, False, True, _UNDEFINED, encoding)  # noqa: FBT003
    return DataElement(key, "SQ", seq, start, is_undefined_length=True), fp.tell()
