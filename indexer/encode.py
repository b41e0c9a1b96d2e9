"""Encode a de-identified dataset as a file: the header, then the Pixel Data element.

The header (preamble, file meta, every element before Pixel Data) is what de-identification
changed and what the leak check scans; the pixel data value is carried across unchanged.

Elements de-identification did not touch are still pydicom ``RawDataElement``s: their value
bytes are written back as read, with no decoding and no re-encoding. Only the elements that
changed go through pydicom's writer. The result is byte for byte what pydicom's ``save_as``
writes; data sets that are not explicit VR little endian, or whose character set changed,
are written by ``save_as`` itself.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
LONG_LENGTH_VRS = frozenset(  # explicit VR: 2 reserved bytes, then a 4-byte length (PS3.5 7.1.2)
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2sHI")


Buffer = bytes | memoryview


@dataclass(frozen=True, slots=True)
class Encoded:
    """A file in parts: everything before Pixel Data, then the Pixel Data element.

    The pixel part may be a view into the source file's bytes: written out, never copied.
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
        return b"".join(self.parts)

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
        return _encode_pydicom(ds)


def _raw_copy_possible(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return (
        ts is not None
        and not ts.is_implicit_VR
        and ts.is_little_endian
        and not ts.is_deflated
        and ds.original_encoding == (False, True)
        and ds.original_character_set == ds._character_set  # noqa: SLF001 - what save_as checks
    )


def _encode_raw(ds: Dataset) -> Encoded:
    """Explicit VR little endian: untouched elements as read, changed ones through pydicom."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(ds.preamble or b"\x00" * 128)
    fp.write(b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    encodings = ds.get("SpecificCharacterSet", "iso8859")
    pixels: tuple[Buffer, ...] = ()
    for tag in sorted(ds.keys()):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:  # noqa: PLR2004 - retired group lengths
            continue
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement) and elem.length != UNDEFINED_LENGTH and elem.VR:
            vr = elem.VR.encode()
            value = elem.value or b""
            if vr in LONG_LENGTH_VRS:
                head = _LONG.pack(tag >> 16, tag & 0xFFFF, vr, 0, len(value))
            else:
                head = _SHORT.pack(tag >> 16, tag & 0xFFFF, vr, len(value))
            if tag == PIXEL_DATA:
                pixels = (head, value)
                continue
            fp.write(head)
            fp.write(value)
        elif tag == PIXEL_DATA:
            buf = DicomBytesIO()
            buf.is_little_endian, buf.is_implicit_VR = True, False
            write_data_element(buf, elem, encodings)
            pixels = (buf.getvalue(),)
        else:
            write_data_element(fp, elem, encodings)
    if pixels and max(ds.keys()) != PIXEL_DATA:  # elements after Pixel Data: one piece
        return Encoded(_save(ds))
    return Encoded(fp.getvalue(), pixels)


def _encode_pydicom(ds: Dataset) -> Encoded:
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


def _save(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
