"""The rules version changes whenever the copies do (see ``profile.RULES_VERSION``).

A rerun processes sources again only when their fingerprint changes, and the rules version
is what carries a change of the rules into it. This test de-identifies a fixed corpus under
several settings, with a fixed key, and compares the digest of every copy with the one
recorded for this rules version (and tool version, which the copies name). A change to the
rules that changes a copy fails it until the rules version is raised and its digest recorded,
so that archives indexed before get the new rules on their next run. (A pydicom release that
writes other bytes changes the copies as well: that, too, needs a new rules version.)

The video objects are a corpus apart: a change to their copies alone needs the video rules
version raised (``profile.VIDEO_RULES_VERSION``), so that a rerun processes again the video
sources, not every source.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    MPEG4HP41,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)

from indexer import __version__, deid, work
from indexer.deid import build_plan, video
from indexer.encode import encode
from tests.builders import in_transfer_syntax, make_instance, to_bytes, with_implicit_element
from tests.deid import kitchen_sink

work.configure_pydicom()
KEY = bytes(range(32))  # fixed: the pseudonyms, UIDs and date shifts of every run agree
SETTINGS = [
    (),
    ("retain-long-full-dates", "retain-uids"),
    ("retain-long-modified-dates", "clean-descriptors", "retain-patient-characteristics"),
    ("retain-safe-private", "retain-device-identity", "retain-institution-identity"),
    ("clean-structured-content", "clean-graphics"),
]
WHOLE_CORPUS = {  # up to rules version 23: the digest of the whole corpus's copies (a record)
    ("0.1.0", 3): "988a4b2fd4f1b0b7357c9a46a9b8e193daaf854123a604d7816d1c3c3217ff1a",
    ("0.1.0", 4): "988a4b2fd4f1b0b7357c9a46a9b8e193daaf854123a604d7816d1c3c3217ff1a",
    ("0.1.0", 5): "bcbb1354c219394adf82f167250ffb47c44dfb2d5fe46ebdef92fd1b00e1f453",
    ("0.1.0", 6): "6535b882557ac6df8cf134a4cb67f022c34061964b9edfcb5f6aeb88d1530af6",
    ("0.1.0", 7): "d400bee7fec0140c72b1e0d60f5f5d6f5bdd8a483b4b56916eecace2b12bfdc8",
    ("0.1.0", 8): "d400bee7fec0140c72b1e0d60f5f5d6f5bdd8a483b4b56916eecace2b12bfdc8",
    ("0.1.0", 9): "14d1f8c8181b7fda5175c756d4cb4d0e6f4f6063263be43153b33265834eba33",
    ("0.1.0", 10): "be2fb0c105b36ccef6254b9af71a1dda6df48bb75043585207598aa89e5e2c1e",
    ("0.1.0", 11): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 12): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 13): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 14): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 15): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 16): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 17): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 18): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 19): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 20): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 21): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 22): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
    ("0.1.0", 23): "45e6a33c804dca16d7655c2f235feede5e5eade306794323eed5f0ee36847392",
}
# (tool version, rules version): the digest of the copies of the corpus's objects that are no
# video (``_corpus``); a change to them raises RULES_VERSION
DIGESTS = {
    ("0.1.0", 23): "988a4b2fd4f1b0b7357c9a46a9b8e193daaf854123a604d7816d1c3c3217ff1a",
    ("0.1.0", 24): "74f36b1878b1c933c002cd47efa476dfbe1b0fcf15c462d0669541ed182de981",
    ("0.1.0", 25): "45500e2004d2c79e966a7a9bf99c261624008db215d02b481832ef5e21368f9b",
    ("0.1.0", 26): "30db18a58cc0710ae2890a2e1b211027de7196e0c4487958355e4615fe8a3b99",
    ("0.1.0", 27): "fca62fcd99f1fad737633abd96e3201fef5d352be657e5180d044496e8c830eb",
    ("0.1.0", 28): "0ae6c98e23f1734842c65e351ee51b677dfd59ee1585fbc24a841901229a020a",
    ("0.1.0", 29): "68d42a32743134696025d80cd42f7c7a7866600284850f3b92d7f08f722930a3",
    ("0.1.0", 30): "9d5fb5514ee11784b9e9ce9e6afca9f54d0a2829c44ae8405db7430a206f678c",
    ("0.1.0", 31): "80ec1fbfe8a8af7f8868456e7eb2e6ca794b67f9491311709c89f950f96d473c",
    ("0.1.0", 32): "553f798fdaec4c77d64f6d5692b7ca01ea3c2b6ce995befa2540cdef6550ffb7",
    ("0.1.0", 33): "553f798fdaec4c77d64f6d5692b7ca01ea3c2b6ce995befa2540cdef6550ffb7",
    ("0.1.0", 34): "553f798fdaec4c77d64f6d5692b7ca01ea3c2b6ce995befa2540cdef6550ffb7",
    ("0.1.0", 35): "553f798fdaec4c77d64f6d5692b7ca01ea3c2b6ce995befa2540cdef6550ffb7",
    ("0.1.0", 36): "553f798fdaec4c77d64f6d5692b7ca01ea3c2b6ce995befa2540cdef6550ffb7",
    ("0.1.0", 37): "553f798fdaec4c77d64f6d5692b7ca01ea3c2b6ce995befa2540cdef6550ffb7",
    ("0.1.0", 38): "553f798fdaec4c77d64f6d5692b7ca01ea3c2b6ce995befa2540cdef6550ffb7",
    ("0.1.0", 39): "553f798fdaec4c77d64f6d5692b7ca01ea3c2b6ce995befa2540cdef6550ffb7",
    ("0.1.0", 40): "4c73c4e5ae46c63fff755283b3f3d3868965818bc26d0527d146a410db39ee8a",
    ("0.1.0", 41): "4c73c4e5ae46c63fff755283b3f3d3868965818bc26d0527d146a410db39ee8a",
}
# (tool version, rules version, video rules version): the digest of the copies of its video
# objects (``_video_corpus``); a change to those alone raises VIDEO_RULES_VERSION
VIDEO_DIGESTS = {
    ("0.1.0", 23, 1): "7d948bb19ca2538e7ed93f2a9effc69a06dff8a086e168dc30d12fcf1b13cdf1",
    ("0.1.0", 23, 2): "7d948bb19ca2538e7ed93f2a9effc69a06dff8a086e168dc30d12fcf1b13cdf1",
    ("0.1.0", 23, 3): "0aa257c38eb9c72d207e627f1080f5ddf914a45b0dd1d4eba1259d4b80d57d18",
    ("0.1.0", 23, 4): "201bccaa6e197ae57e8f138d914b78ea06e31a7098da59178c78fd381cf44037",
    ("0.1.0", 24, 4): "201bccaa6e197ae57e8f138d914b78ea06e31a7098da59178c78fd381cf44037",
    ("0.1.0", 25, 4): "201bccaa6e197ae57e8f138d914b78ea06e31a7098da59178c78fd381cf44037",
    ("0.1.0", 26, 4): "201bccaa6e197ae57e8f138d914b78ea06e31a7098da59178c78fd381cf44037",
    ("0.1.0", 27, 4): "201bccaa6e197ae57e8f138d914b78ea06e31a7098da59178c78fd381cf44037",
    ("0.1.0", 27, 5): "629fd336113fe8d485ca028094b93e1543a53731c9d1beeca652095e6e3fcc13",
    ("0.1.0", 28, 5): "629fd336113fe8d485ca028094b93e1543a53731c9d1beeca652095e6e3fcc13",
    ("0.1.0", 28, 6): "cdef93d251c8d1f9442d2638aafe9c315537a24ea3bd63ce1369f835b37d3c17",
    ("0.1.0", 28, 7): "0d3ccba047a16b4b7a27c8423f50ec8ff1bf65146837e5dbfe25627832af077a",
    ("0.1.0", 28, 8): "d20f5aef1f71e0050c9fccc436b76f1400a26cb8b192491dd3ed1d76b038a116",
    ("0.1.0", 28, 9): "4831ea8221f1698bdc1f33aabc44e6b722b3f751d0fce33cc3bed4226fb0d600",
    ("0.1.0", 28, 10): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 29, 10): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 30, 10): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 31, 10): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 32, 10): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 33, 10): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 34, 10): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 35, 10): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 35, 11): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 35, 12): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 36, 12): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 36, 13): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 36, 14): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 37, 14): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 37, 15): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 38, 15): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 39, 15): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 40, 15): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
    ("0.1.0", 41, 15): "1436fbb487013d3a31de94e05106cb5a99ee8651276a7de893ad95944a0628c3",
}


def _encapsulated(patient: int, syntax: str, *fragments: bytes) -> bytes:
    """An 8 by 8 object of ``patient`` whose one frame is in ``fragments``, in ``syntax``."""
    ds = make_instance(patient, 1, 1, 1, rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate(list(fragments))
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 1
    return to_bytes(ds)


def _jpeg_with_text() -> bytes:
    """A JPEG frame with Exif and a comment in its header (blanked since version 2)."""

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    frame = (
        b"\xff\xd8"
        + seg(0xE1, b"Exif\x00\x00camera serial 1234")
        + seg(0xFE, b"a comment")
        + seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + b"\x12\x34" * 8
        + b"\xff\xd9"
    )
    return _encapsulated(3, JPEGBaseline8Bit, frame)


def _jpeg_in_fragments() -> bytes:
    """A JPEG frame in two fragments, the first ending in its Exif (blanked on into the
    second since version 24)."""

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    frame = b"\xff\xd8" + seg(0xE1, b"Exif\x00\x00camera owner: a name\x00")
    frame += seg(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x12\x34" * 8 + b"\xff\xd9"
    return _encapsulated(15, JPEGBaseline8Bit, frame[:20], frame[20:])


def _codestream_in_fragments() -> bytes:
    """A JPEG 2000 frame in two fragments, its second tile-part's comment in the second
    (blanked since version 25)."""

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    siz = seg(0x51, b"\x00\x00" + b"\x00\x00\x00\x08" * 8 + b"\x00\x01\x07\x01\x01")
    parts = b""
    for n, comment in enumerate((b"first", b"scanned at ward 4")):
        body = seg(0x64, b"\x00\x01" + comment) + b"\xff\x93" + b"\x12\x34" * 8
        parts += b"\xff\x90" + struct.pack(">HHLBB", 10, 0, 12 + len(body), n, 2) + body
    frame = b"\xff\x4f" + siz + parts + b"\xff\xd9"
    cut = frame.index(b"scanned") - 20
    return _encapsulated(16, JPEG2000Lossless, frame[:cut], frame[cut:])


def _jpeg_with_a_trailer() -> bytes:
    """A phone's JPEG with a trailer after its end (a motion photo's MP4 file, zeroed since
    version 26) and a comment between its scans (blanked since version 26)."""

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    scan = seg(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x12\xff\x00\x34" * 4
    frame = b"\xff\xd8" + scan + seg(0xFE, b"taken at ward 4") + scan + b"\xff\xd9"
    frame += b"\x00\x00\x00\x18ftypmp42\xa9xyz+48.8577+002.2950/"
    return _encapsulated(17, JPEGBaseline8Bit, frame)


def _overlay_in_high_bits() -> bytes:
    """12 stored bits, an overlay in bit 12 (cleared since version 2)."""
    ds = make_instance(4, 1, 1, 1, rows=8, columns=8)
    ds.PixelData = bytes(b | (0x10 if i % 4 == 1 else 0) for i, b in enumerate(ds.PixelData))
    return to_bytes(ds)


def _pixels_past_the_image() -> bytes:
    """Pixel data 64 bytes longer than the image (cut since version 2)."""
    ds = make_instance(5, 1, 1, 1, rows=8, columns=8)
    ds.PixelData = ds.PixelData + b"\x00\x01" * 32
    return to_bytes(ds)


def _box(kind: bytes, payload: bytes) -> bytes:
    """An ISO box (JP2, MP4)."""
    return struct.pack(">L", len(payload) + 8) + kind + payload


# a JPEG 2000 codestream of one tile, no comment
_CODESTREAM = (
    b"\xff\x4f\xff\x51\x00\x29\x00\x00"
    + b"\x00\x00\x00\x08" * 8
    + b"\x00\x01\x07\x01\x01\xff\x93"
    + b"\x12\x34" * 8
    + b"\xff\xd9"
)


def _jp2_with_a_label() -> bytes:
    """A wrapped JP2 file whose association box holds a label (blanked since version 3)."""
    frame = (
        _box(b"jP  ", b"\r\n\x87\n")
        + _box(b"asoc", _box(b"lbl ", b"a label"))
        + _box(b"jp2c", _CODESTREAM)
    )
    return _encapsulated(6, JPEG2000Lossless, frame)


def _jp2_in_fragments() -> bytes:
    """A wrapped JP2 file in two fragments, the first ending in its XML box (zeroed on into
    the second since version 27)."""
    xml = _box(b"xml ", b"<owner> a name</owner>")
    frame = _box(b"jP  ", b"\r\n\x87\n") + xml + _box(b"jp2c", _CODESTREAM)
    cut = frame.index(b"a name")
    return _encapsulated(18, JPEG2000Lossless, frame[:cut], frame[cut:])


def _dates_of_early_years() -> bytes:
    """Dates of a year under 1000, and .NET's smallest date (0001-01-01): shifted, written in
    four digits and emptied since version 29 (``strftime`` lost the first's zeros, and the
    second failed the object)."""
    ds = make_instance(1, 7, 1, 8, StudyDate="09990315", SeriesDate="00010101")
    ds.AcquisitionDateTime = "08000101120000"
    return to_bytes(ds)


def _sequence_as_bytes() -> bytes:
    """A kept sequence written as OB, a name in its item: read as the sequence it is and
    walked since version 29 (kept as bytes, the name stayed)."""
    ds = make_instance(1, 8, 1, 9)
    item = Dataset()
    item.CodeValue = "T-D3000"
    item.ReferringPhysicianName = "Some^One"
    ds.AnatomicRegionSequence = [item]
    data = to_bytes(ds)
    head = struct.pack("<HH", 0x0008, 0x2218) + b"SQ"
    return data.replace(head, head[:4] + b"OB")


def _private_sequence_unread() -> bytes:
    """A safe-listed private sequence in an implicit VR object, a name in its item: read
    as a sequence and walked since version 29 (kept as bytes, the name stayed)."""
    ds = make_instance(1, 9, 1, 10)
    item = Dataset()
    item.CodeValue = "X1"
    item.PatientName = "Some^One"
    ds.private_block(0x7E01, "HOLOGIC, Inc.", create=True).add_new(0x10, "SQ", [item])
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return to_bytes(ds)


def _variable_pixel_data() -> bytes:
    """ACR-NEMA's Variable Pixel Data beside Pixel Data: removed since version 29 (kept)."""
    ds = make_instance(1, 10, 1, 11)
    ds.add_new(0x7F000010, "OB", b"an image of its own\x00")
    return to_bytes(ds)


def _text_as_a_time() -> bytes:
    """A Study Time holding a name (kept as read under retain-long-modified-dates): a dummy
    since version 29."""
    ds = make_instance(1, 11, 1, 12, StudyTime="Some One")
    return to_bytes(ds)


def _text_after_a_date() -> bytes:
    """Dates and date-times holding text after the date (kept as read, or kept after the
    shifted date), a number string and an age holding text (kept as read): dummies since
    version 30."""
    ds = make_instance(1, 12, 1, 13, SeriesDate="20230101 Some One")
    ds.AcquisitionDateTime = "20230101120000 Some One"
    ds.add_new(0x00080416, "DT", "20230101 call Some One")  # Expiration Date Time: kept
    ds.SliceThickness, ds.PatientAge = "5.00000", "042Y 12345"
    data = to_bytes(ds)
    return data.replace(b"5.00000", b"5 Some ").replace(b"042Y 12345", b"042Y  Some")


def _text_in_a_uid() -> bytes:
    """A Study Instance UID (kept under Retain UIDs) and a referenced class UID (kept by
    every setting) holding text: their keyed pseudonyms since version 31 (kept as read)."""
    ds = make_instance(1, 12, 1, 14)
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.SourceImageSequence = [item]
    data = to_bytes(ds)
    study = ds.StudyInstanceUID
    text = study[: len(study) - 9] + " Some One"
    return data.replace(b"1.2.840.10008.5.1.4.1.1.4", b"1.2.840.10008.5.1.4 Some ").replace(
        study.encode(), text.encode()
    )


def _text_in_one_of_a_uids_values() -> bytes:
    """A Related Frame of Reference UID of two values, one holding text: under Retain UIDs,
    since version 32 that value alone gets its pseudonym (both did)."""
    ds = make_instance(1, 12, 1, 16)
    ds.add_new(0x300600C2, "UI", ["1.2.999.497.77", "1.2.999.497.78"])
    return to_bytes(ds).replace(b"1.2.999.497.78", b"1.2.999.Some^O")


def _letters_as_numbers() -> bytes:
    """Implicit VR: a name under a kept angle's tag (four numbers of one) and under the
    Acquisition Matrix (no whole numbers): dummies since version 31 (kept as read)."""
    ds = make_instance(1, 12, 1, 15)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = with_implicit_element(to_bytes(ds), 0x00181310, b"Some^On", 0x0020000D)
    return with_implicit_element(data, 0x00189219, b"Some^One", 0x0020000D)


def _text_of_undefined_length() -> bytes:
    """Software Versions of undefined length in an implicit VR object, an item after it:
    removed unread since version 29 (a dummy before; a US was kept as read)."""
    ds = make_instance(1, 12, 1, 13)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = to_bytes(ds)
    name = b"Some^One"
    item = struct.pack("<HHL", 0x0010, 0x0010, len(name)) + name
    value = struct.pack("<HHL", 0xFFFE, 0xE000, len(item)) + item
    value += struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    at = data.index(struct.pack("<HH", 0x0020, 0x000D), 132 + 100)
    return data[:at] + struct.pack("<HHL", 0x0018, 0x1020, 0xFFFFFFFF) + value + data[at:]


def _private_sequence_as_ob() -> bytes:
    """A safe-listed private sequence written as OB, a name in its item: read as a sequence
    and walked since version 29 (kept as bytes, the name stayed)."""
    ds = make_instance(1, 13, 1, 14)
    item = Dataset()
    item.CodeValue = "X2"
    item.PatientName = "Some^Other"
    ds.private_block(0x7E01, "HOLOGIC, Inc.", create=True).add_new(0x11, "SQ", [item])
    data = to_bytes(ds)
    head = struct.pack("<HH", 0x7E01, 0x1011) + b"SQ"
    return data.replace(head, head[:4] + b"OB")


def _jp2_with_a_writers_box() -> bytes:
    """A wrapped JP2 file with a box of a writer's own kind, in its header and after it, and
    JPEG reconstruction data (zeroed, as every box no decoder reads, since version 28)."""
    header = _box(b"jp2h", _box(b"ihdr", bytes(14)) + _box(b"wrtr", b"a name"))
    frame = (
        _box(b"jP  ", b"\r\n\x87\n")
        + header
        + _box(b"wrtr", b"a place")
        + _box(b"jbrd", b"a comment")
        + _box(b"jp2c", _CODESTREAM)
    )
    return _encapsulated(20, JPEG2000Lossless, frame)


def _h264_with_user_data() -> bytes:
    """An H.264 stream whose SEI holds an encoder's settings (blanked since version 5)."""
    rbsp = b"\x05\x19" + bytes(range(16)) + b"x264 core" + b"\x80"  # type 5, 25 bytes
    frame = b"\x00\x00\x00\x01\x06" + rbsp + b"\x00\x00\x01\x65\x88" + b"\x12\x34" * 8
    return _encapsulated(7, MPEG4HP41, frame)


def _h264_with_a_reserved_message() -> bytes:
    """An H.264 stream whose SEI holds a message of a type H.264 does not define (blanked
    since video version 6)."""
    rbsp = b"\x64\x0a" + b"a recorder" + b"\x01\x01\x00" + b"\x80"  # type 100; picture timing
    frame = b"\x00\x00\x00\x01\x06" + rbsp + b"\x00\x00\x01\x65\x88" + b"\x12\x34" * 8
    return _encapsulated(21, MPEG4HP41, frame)


def _mp4_with_a_title() -> bytes:
    """An MP4 file wrapped whole, its title in its metadata (zeroed since version 6)."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">L", len(payload) + 8) + kind + payload

    title = box(b"\xa9nam", box(b"data", b"\x00\x00\x00\x01\x00\x00\x00\x00a title"))
    meta = box(b"meta", b"\x00" * 4 + box(b"ilst", title))
    frame = box(b"ftyp", b"isom\x00\x00\x02\x00") + box(b"mdat", b"\x12\x34" * 8)
    return _encapsulated(8, MPEG4HP41, frame + box(b"moov", box(b"udta", meta)))


def _mp4_with_names() -> bytes:
    """An MP4 file wrapped whole, its video track's handler named and its sample entry's
    compressor name a device's (zeroed since video version 8)."""
    handler = _box(b"hdlr", bytes(8) + b"vide" + bytes(12) + b"a device's handler\x00")
    name = b"\x0ba device cam" + bytes(20)
    entry = _box(b"avc1", bytes(6) + b"\x00\x01" + bytes(32) + b"\x00\x01" + name + bytes(4))
    table = _box(b"stbl", _box(b"stsd", bytes(4) + b"\x00\x00\x00\x01" + entry))
    track = _box(b"trak", _box(b"mdia", handler + _box(b"minf", table)))
    frame = _box(b"ftyp", b"isom\x00\x00\x02\x00") + _box(b"mdat", b"\x12\x34" * 8)
    return _encapsulated(23, MPEG4HP41, frame + _box(b"moov", track))


def _mp4_with_unplaced_data() -> bytes:
    """An MP4 file whose media data holds, after its one video sample, a writer's bytes that
    no track places (zeroed since video version 9)."""
    sample = b"\x00\x00\x00\x04\x41\x9a\x12\x34" + b"a writer's own"  # a slice, then its bytes
    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00")
    entry = _box(b"avc1", bytes(78) + _box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00"))
    table = (
        _box(b"stsd", b"\x00\x00\x00\x00\x00\x00\x00\x01" + entry)
        + _box(b"stsz", bytes(8) + struct.pack(">LL", 1, 8))
        + _box(b"stsc", bytes(4) + struct.pack(">LLLL", 1, 1, 1, 1))
        + _box(b"stco", bytes(4) + struct.pack(">LL", 1, len(ftyp) + 8))
    )
    trak = _box(b"trak", _box(b"mdia", _box(b"minf", _box(b"stbl", table))))
    return _encapsulated(24, MPEG4HP41, ftyp + _box(b"mdat", sample) + _box(b"moov", trak))


def _mp4_with_a_trailer() -> bytes:
    """An MP4 file whose boxes are followed by bytes that are no box, a writer's (zeroed
    past the 16 a box's header would take since video version 10)."""
    frame = _box(b"ftyp", b"isom\x00\x00\x02\x00") + _box(b"mdat", b"\x12\x34" * 8)
    trailer = b"\x00\x00\x00\x02" + b"a writer's trailer, no box"
    return _encapsulated(25, MPEG4HP41, frame + _box(b"moov", b"") + trailer)


def _mp4_with_sei() -> bytes:
    """An MP4 file whose video sample holds an encoder's SEI message (blanked since version 7)."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">L", len(payload) + 8) + kind + payload

    sei = b"\x06\x05\x19" + bytes(range(16)) + b"x264 core" + b"\x80"
    sample = struct.pack(">L", len(sei)) + sei
    ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00")
    entry = box(b"avc1", bytes(78) + box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00"))
    table = (
        box(b"stsd", b"\x00\x00\x00\x00\x00\x00\x00\x01" + entry)
        + box(b"stsz", bytes(8) + struct.pack(">LL", 1, len(sample)))
        + box(b"stsc", bytes(4) + struct.pack(">LLLL", 1, 1, 1, 1))
        + box(b"stco", bytes(4) + struct.pack(">LL", 1, len(ftyp) + 8))
    )
    trak = box(b"trak", box(b"mdia", box(b"minf", box(b"stbl", table))))
    return _encapsulated(9, MPEG4HP41, ftyp + box(b"mdat", sample) + box(b"moov", trak))


def _fragmented_mp4_with_sei() -> bytes:
    """A fragmented MP4 file whose one sample holds an SEI message (blanked since version 11)."""

    def box(kind: bytes, payload: bytes, flags: int = -1) -> bytes:
        full = b"" if flags < 0 else flags.to_bytes(4, "big")
        return struct.pack(">L", len(payload) + len(full) + 8) + kind + full + payload

    sei = b"\x06\x05\x19" + bytes(range(16)) + b"x264 core" + b"\x80"
    sample = struct.pack(">L", len(sei)) + sei
    entry = box(b"avc1", bytes(78) + box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00"))
    table = box(b"stsd", b"\x00\x00\x00\x01" + entry, 0)
    track = box(b"tkhd", bytes(8) + b"\x00\x00\x00\x01" + bytes(68), 0)
    moov = box(b"moov", box(b"trak", track + box(b"mdia", box(b"minf", box(b"stbl", table)))))
    traf = box(b"tfhd", b"\x00\x00\x00\x01", 0x20000)
    traf += box(b"trun", struct.pack(">LlL", 1, 0, len(sample)), 0x201)
    moof = box(b"moof", box(b"traf", traf))
    moof = moof.replace(struct.pack(">Ll", 1, 0), struct.pack(">Ll", 1, len(moof) + 8))
    frame = box(b"ftyp", b"isom\x00\x00\x02\x00") + moov + moof + box(b"mdat", sample)
    return _encapsulated(12, MPEG4HP41, frame)


def _transport_stream() -> bytes:
    """A transport stream: a service's name, an H.264 SEI message (blanked since version 9)."""

    def packet(pid: int, payload: bytes) -> bytes:
        stuffing = b"\x00" + b"\xff" * (182 - len(payload))  # an adaptation field's
        return bytes([0x47, 0x40 | pid >> 8, pid & 0xFF, 0x30, len(stuffing)]) + stuffing + payload

    sdt = b"\x00\x42\xb0\x18\x00\x01\xc1\x00\x00\xff\x01\xff\x48\x0b\x01\x04testa service"
    sei = b"\x00\x00\x00\x01\x06\x05\x19" + bytes(range(16)) + b"x264 core\x80"
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00" + sei + b"\x00\x00\x01\x65\x88\x12\x34"
    return _encapsulated(10, MPEG4HP41, packet(0x11, sdt) + packet(0x100, pes))


def _transport_stream_with_metadata() -> bytes:
    """A transport stream with a metadata stream (ID3) and AC-3 audio, both of private stream
    1, told apart by its program map table (the metadata zeroed since video version 3)."""

    def packet(pid: int, payload: bytes, *, first: bool = True) -> bytes:
        stuffing = b"\x00" + b"\xff" * (182 - len(payload))  # an adaptation field's
        start = 0x40 if first else 0
        return bytes([0x47, start | pid >> 8, pid & 0xFF, 0x30, len(stuffing)]) + stuffing + payload

    pmt = b"\x00\x02\xb0\x1c\x00\x01\xc1\x00\x00\xe1\x00\xf0\x00"
    pmt += b"\x1b\xe1\x00\xf0\x00" + b"\x15\xe1\x01\xf0\x00" + b"\x81\xe1\x02\xf0\x00"
    pmt += b"\xde\xad\xbe\xef"
    pes = b"\x00\x00\x01\xbd\x00\x00\x80\x00\x00"
    id3 = pes + b"ID3\x04\x00\x00\x00\x00\x00\x20TIT2\x00\x00\x00\x0a\x00\x00\x03ward 4"
    ac3 = pes + b"\x0b\x77" + bytes(range(40))
    video = b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00\x00\x00\x00\x01\x65\x88\x12\x34"
    stream = packet(0x1000, pmt) + packet(0x100, video) + packet(0x101, id3)
    stream += packet(0x101, b"room 12", first=False) + packet(0x102, ac3)
    return _encapsulated(12, MPEG4HP41, stream)


def _transport_stream_with_private_data() -> bytes:
    """A transport stream with private data of a writer's own format in private stream 1,
    which its program map table does not name audio (zeroed since video version 7)."""

    def packet(pid: int, payload: bytes) -> bytes:
        stuffing = b"\x00" + b"\xff" * (182 - len(payload))  # an adaptation field's
        return bytes([0x47, 0x40 | pid >> 8, pid & 0xFF, 0x30, len(stuffing)]) + stuffing + payload

    pmt = b"\x00\x02\xb0\x1a\x00\x01\xc1\x00\x00\xe1\x00\xf0\x00"
    pmt += b"\x1b\xe1\x00\xf0\x00" + b"\x06\xe1\x01\xf0\x06\x05\x04WRTR"
    pmt += b"\xde\xad\xbe\xef"
    note = b"\x00\x00\x01\xbd\x00\x00\x80\x00\x00" + b"a writer's note: ward 4"
    video = b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00\x00\x00\x00\x01\x65\x88\x12\x34"
    stream = packet(0x1000, pmt) + packet(0x100, video) + packet(0x101, note)
    return _encapsulated(22, MPEG4HP41, stream)


def _motion_jpeg_mp4() -> bytes:
    """An MP4 file of Motion JPEG whose sample has a camera's Exif and a comment (blanked
    since video version 4)."""

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    sample = b"\xff\xd8" + seg(0xE1, b"Exif\x00\x00serial 1234") + seg(0xFE, b"ward 4")
    sample += seg(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x12\x34" * 8 + b"\xff\xd9"
    return _one_track_mp4(14, b"qt  \x00\x00\x02\x00qt  ", b"vide", b"jpeg", 78, sample)


def _one_track_mp4(
    patient: int, brands: bytes, handler: bytes, entry: bytes, size: int, sample: bytes
) -> bytes:
    """An MP4 file (``brands``: its ``ftyp``'s payload) of one track of ``handler`` whose
    one sample is ``sample``, its sample entry ``entry`` (``size`` bytes of zeros)."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">L", len(payload) + 8) + kind + payload

    ftyp = box(b"ftyp", brands)
    table = box(b"stsd", bytes(4) + b"\x00\x00\x00\x01" + box(entry, bytes(size)))
    table += box(b"stsz", bytes(4) + struct.pack(">LLL", 0, 1, len(sample)))
    table += box(b"stsc", bytes(4) + struct.pack(">LLLL", 1, 1, 1, 1))
    table += box(b"stco", bytes(4) + struct.pack(">LL", 1, len(ftyp) + 8))
    hdlr = box(b"hdlr", bytes(8) + handler + bytes(13))
    trak = box(b"trak", box(b"mdia", hdlr + box(b"minf", box(b"stbl", table))))
    return _encapsulated(patient, MPEG4HP41, ftyp + box(b"mdat", sample) + box(b"moov", trak))


def _program_stream() -> bytes:
    """A program stream whose user data a PES header cuts (blanked whole since version 10)."""

    def pes(data: bytes) -> bytes:
        header = b"\x81\x80\x05\x21\x00\x01\x00\x01"
        return b"\x00\x00\x01\xe0" + struct.pack(">H", len(header + data)) + header + data

    pack = b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01\x01\x89\xc3\xf8"
    video = b"\x00\x00\x01\xb3\x14\x00\xf0\x23" + b"\x00\x00\x01\xb2recorded by a camera"
    rest = b" in room 4" + b"\x00\x00\x01\x00\x00\x0f\x12\x34"
    return _encapsulated(11, MPEG2MPML, pack + pes(video) + pack + pes(rest) + b"\x00\x00\x01\xb9")


def _dvd_with_a_subpicture() -> bytes:
    """A program stream with a subpicture in private stream 1 (zeroed since video rules 5)."""
    header = b"\x81\x80\x05\x21\x00\x01\x00\x01"
    data = b"\x20" + b"\x00\x20\x00\x10" + b"Room 4, bed 2 as lines"
    pes = b"\x00\x00\x01\xbd" + struct.pack(">H", len(header + data)) + header + data
    pack = b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01\x01\x89\xc3\xf8"
    return _encapsulated(19, MPEG2MPML, pack + pes + b"\x00\x00\x01\xb9")


def _mp4_with_a_subtitle() -> bytes:
    """An MP4 file with a subtitle track (its sample zeroed since version 23)."""
    subtitle = b"\x00\x0dRoom 4, bed 2"
    return _one_track_mp4(13, b"isom\x00\x00\x02\x00isom", b"text", b"tx3g", 38, subtitle)


def _deflated() -> bytes:
    """A deflated object (its copy holds its pixel data since version 40)."""
    return in_transfer_syntax(
        make_instance(18, 1, 1, 1, rows=8, columns=8), DeflatedExplicitVRLittleEndian
    )


def _corpus() -> list[bytes]:
    """Objects that are no video: their copies change with ``RULES_VERSION``."""
    return [
        to_bytes(kitchen_sink.build()[0]),
        to_bytes(make_instance(1, 1, 1, 1)),
        to_bytes(make_instance(2, 3, 2, 4, rows=4, columns=6)),
        _jpeg_with_text(),
        _overlay_in_high_bits(),
        _pixels_past_the_image(),
        _jp2_with_a_label(),
        _jpeg_in_fragments(),
        _codestream_in_fragments(),
        _jpeg_with_a_trailer(),
        _jp2_in_fragments(),
        _jp2_with_a_writers_box(),
        _dates_of_early_years(),
        _sequence_as_bytes(),
        _private_sequence_unread(),
        _variable_pixel_data(),
        _text_as_a_time(),
        _text_of_undefined_length(),
        _private_sequence_as_ob(),
        _text_after_a_date(),
        _text_in_a_uid(),
        _letters_as_numbers(),
        _text_in_one_of_a_uids_values(),
        _deflated(),
    ]


def _video_corpus() -> list[bytes]:
    """Video objects (``video.VIDEO``'s transfer syntaxes): their copies change with either."""
    return [
        _h264_with_user_data(),
        _mp4_with_a_title(),
        _mp4_with_sei(),
        _transport_stream(),
        _program_stream(),
        _fragmented_mp4_with_sei(),
        _mp4_with_a_subtitle(),
        _transport_stream_with_metadata(),
        _motion_jpeg_mp4(),
        _dvd_with_a_subpicture(),
        _h264_with_a_reserved_message(),
        _transport_stream_with_private_data(),
        _mp4_with_names(),
        _mp4_with_unplaced_data(),
        _mp4_with_a_trailer(),
    ]


def corpus_digest(corpus: list[bytes]) -> str:
    """SHA-256 over the copies of ``corpus`` under each of SETTINGS."""
    h = hashlib.sha256()
    for options in SETTINGS:
        plan = build_plan(options)
        for data in corpus:
            ds = work.read_dataset(data, pixels_in_place=True)
            copy = encode(deid.apply(plan, ds, KEY).ds).data
            h.update(struct.pack("<Q", len(copy)) + copy)
    return h.hexdigest()


def test_the_corpora_are_told_apart_as_the_ingest_tells_video():
    """What the ingest records as video (by transfer syntax) is what the video corpus holds."""
    for data, is_video in [(d, False) for d in _corpus()] + [(d, True) for d in _video_corpus()]:
        ds = work.read_dataset(data, pixels_in_place=True)
        assert (str(ds.file_meta.TransferSyntaxUID) in video.VIDEO) is is_video


def test_the_copies_change_only_with_the_rules_version():
    got = corpus_digest(_corpus())
    assert corpus_digest(_corpus()) == got  # the same every time: nothing random, no clock
    want = DIGESTS.get((__version__, deid.RULES_VERSION))
    if want != got:
        pytest.fail(
            f"the copies of the fixed corpus changed ({got}); if the rules changed what they "
            "write, raise RULES_VERSION in indexer/deid/profile.py and record "
            f"({__version__!r}, {deid.RULES_VERSION + (want is not None)}): {got!r} in DIGESTS"
        )


def test_the_video_copies_change_only_with_a_rules_version():
    """A change to the video objects' copies alone needs VIDEO_RULES_VERSION raised (or
    RULES_VERSION: every source processed again)."""
    got = corpus_digest(_video_corpus())
    key = (__version__, deid.RULES_VERSION, deid.VIDEO_RULES_VERSION)
    want = VIDEO_DIGESTS.get(key)
    if want != got:
        pytest.fail(
            f"the copies of the fixed video corpus changed ({got}); if the rules changed what "
            "they write to video objects alone, raise VIDEO_RULES_VERSION in "
            f"indexer/deid/profile.py and record {(*key[:2], key[2] + (want is not None))}: "
            f"{got!r} in VIDEO_DIGESTS"
        )
