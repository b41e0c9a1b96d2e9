"""Encode a de-identified dataset as a file: header through pydicom, pixel data as bytes.

The header (preamble, file meta, every element before Pixel Data) is what de-identification
changed and what the leak check scans; the pixel data value is carried across unchanged.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True, slots=True)
class Encoded:
    """A file in two parts: everything before Pixel Data, and the Pixel Data element."""

    header: bytes
    pixels: bytes

    @property
    def data(self) -> bytes:
        """The whole file."""
        return self.header + self.pixels


def encode(ds: Dataset) -> Encoded:
    """Encode ``ds`` (file meta and preamble included) as header bytes plus pixel bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        last = max(ds.keys()) if len(ds) else None
        if last != PIXEL_DATA:  # no pixel data, or elements after it: one piece
            return Encoded(_save(ds), b"")
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
                return Encoded(_save(ds), b"")
            fp.is_little_endian, fp.is_implicit_VR = ts.is_little_endian, ts.is_implicit_VR
        write_data_element(fp, elem)
        return Encoded(header, fp.getvalue())


def _save(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
