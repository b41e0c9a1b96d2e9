"""Fuzz the per-object path: damaged objects, each indexed or refused alone, checked by `verify`.

Usage:
    python scripts/fuzz.py [--objects N] [--seed S]
                           [--mutator bytes|structured|both|values|charsets]
                           [--option NAME ...] [--rules FILE] [--save DIR] [--progress]

Each object is one of the test suite's bases (the kitchen sink and a plain instance, in
explicit VR little endian, implicit VR and big endian; and, for the bytes mutator, video
objects whose user data holds text, cut by a fragment's end, in a program or transport
stream too, an MP4 file's Motion JPEG whose Exif holds text, a JPEG frame whose Exif a
fragment's end cuts, and a wrapped JP2 file whose XML one cuts), damaged by a mutator of
``tests/fuzzing.py``: ``bytes`` changes, cuts and makes up bytes anywhere past the
preamble; ``structured`` damages whole elements (a tag byte, an element written twice, and
in explicit VR a VR byte); ``both`` picks one of the two for each object; ``values`` writes
text holding the marker into dates, times, ages, number strings and UIDs (in implicit VR,
binary numbers too), after their value or in its place, which no such kept value may keep
(a finding if one does); ``charsets`` gives some objects a patient's name in another
character set (Cyrillic, Greek, Thai, ideographs...) and names another set in others, then
writes a name (the patient's, or one holding the marker; at times in another case) into
some texts in the character set and ISO 2022 escape sequences inside them: a reader decodes
them in the set and takes the escapes out, and the copy must show no name the original's
identifying attributes hold, in any case. The plan is the basic profile, with the options
(``--option``) and site rules (``--rules``) given. Each is de-identified and indexed as the
ingest does it (``work.prepare`` and ``work.index``, the copy kept in memory), then judged:

- refused: its reason is one a check foresaw (never ``unexpected_error``), its message
  holds no planted marker, and where de-identification found a value it cannot handle
  (``invalid_element``), pydicom cannot read every element either (``reads_whole``);
- indexed: its index rows are what PostgreSQL and MongoDB take (``unstorable``: integer
  columns, a header of strict JSON whose integers fit 64 bits), and ``verify`` reads the
  original as it does (``work.read_dataset`` as stored) and finds none of its identifying
  values in the copy, read back by pydicom; and the copy holds pixel data where the
  original does (a deflated object's went without it).

Anything else is a finding: printed with the seed and the object's number (the same seed
gives the same stream, and the same keys: dates move by the same days, pseudonyms are the
same), its bytes saved under ``--save`` (synthetic data, markers only).
Prints the outcomes by reason; exits 1 when there is a finding. Markers found in indexed
copies are counted apart, by where they lie: a damaged tag can rename an identifying element
to a kept attribute, and then nothing in the object says its value identifies anyone;
damaged frames can make text a header's that decoders read (kept, and searched for the
object's values only), or image data (told apart where the marker is in one of the
object's own identifying values: the video bases' texts hold the patient's name). Under a
kept attribute, a marker every one of whose
elements an option or rule keeps, and the basic profile would not, is there by design (the
bases plant one in each); the rest, under attributes the profile itself keeps, are worth a
look (a retired Variable Pixel Data carrying a damaged Pixel Data's video, seed 95; a
description whose VR byte became TM, kept as a time, seed 89).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import random
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402
import pydicom  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import (  # noqa: E402
    HEVCMP51,
    MPEG2MPML,
    MPEG4HP41,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)

from indexer import keys, rules_file, work  # noqa: E402
from indexer.deid import Plan, build_plan, frames, verify, video  # noqa: E402
from indexer.deid.pixels import PIXEL_DATA  # noqa: E402
from indexer.deid.profile import Decision, decide  # noqa: E402
from indexer.deid.rules import RuleSet  # noqa: E402
from indexer.deid.table import Action, load_table, parse_options  # noqa: E402
from indexer.deid.verify import BULK_TAGS  # noqa: E402
from indexer.errors import DeidError, RuleError, SourceError  # noqa: E402
from indexer.records import IndexRecord, SourceFile  # noqa: E402
from indexer.store.files import LocalStore  # noqa: E402
from tests.builders import in_transfer_syntax, make_instance  # noqa: E402
from tests.deid import kitchen_sink  # noqa: E402
from tests.fuzzing import VALUE_VRS, damaged, mutated, planted, recoded  # noqa: E402

MARK = "PHIMARK"
EXACT = 0xFFFFFFFF  # a table row for one tag, not a range


@dataclass
class Report:
    """What a run found: outcomes by reason, and the findings (number, what)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    findings: list[tuple[int, str]] = field(default_factory=list)
    key_id: str = ""  # the pseudonym key's id (``run_keys``)


def run_keys(seed: int) -> keys.Keys:
    """The keys of a run from ``seed``: a run's outcomes hang on them too.

    Random keys moved dates by other days each run, and made other pseudonyms and dummy
    UIDs: a value found by chance inside one, or a shifted date equal to another original
    date, came and went between runs of one seed.
    """
    master = hashlib.sha256(f"dicom-index fuzz seed {seed}".encode()).digest()
    return keys.from_master(base64.b64encode(master).decode())


def bases() -> tuple[dict[str, list[bytes]], list[str]]:
    """The bases by their data set's encoding (``tests.fuzzing.heads``), and their markers."""
    sink, sink_markers = kitchen_sink.build()
    found: dict[str, list[bytes]] = {}
    for encoding, ts in (
        ("explicit", ExplicitVRLittleEndian),
        ("implicit", ImplicitVRLittleEndian),
        ("big", ExplicitVRBigEndian),
    ):
        found[encoding] = [
            in_transfer_syntax(sink, ts),  # (names the syntax in its file meta, then writes)
            in_transfer_syntax(make_instance(4, 1, 1, len(found) + 1, marker=MARK), ts),
        ]
    found[VIDEO] = [_video(ts, stream) for ts, stream in _VIDEO_STREAMS]
    return found, [MARK, "KSMARK", *sink_markers.values()]


VIDEO = "video"  # bases damaged by the bytes mutator only, as explicit VR ones
# the video bases' patient's name (``_video``'s instance): an identifying value of theirs
_NAME = f"Doe^{MARK}5^Q".encode()
_TEXT = MARK.encode() + b" " + _NAME + b" recorded at St. Elsewhere"
_H264 = b"\x00\x00\x00\x01\x67\x64\x00\x1f\x00\x00\x01\x06"  # a parameter set, an SEI unit
_H264_SLICE = b"\x80\x00\x00\x01\x65\x88\x84" + bytes(range(1, 200))  # its stop bit, a slice
_HEVC = b"\x00\x00\x00\x01\x40\x01\x0c\x01\x00\x00\x01\x4e\x01"
_HEVC_SLICE = b"\x80\x00\x00\x01\x26\x01" + bytes(range(1, 200))
_UUID = bytes(range(0xA0, 0xB0))


def _message(kind: int, payload: bytes) -> bytes:
    """An SEI message of a payload of under 255 bytes."""
    return bytes([kind, len(payload)]) + payload


_VIDEO_STREAMS = [  # user data holding text, cut by a fragment's end, and a slice after it
    (MPEG4HP41, _H264 + _message(5, _UUID + _TEXT) + _H264_SLICE),
    (HEVCMP51, _HEVC + _message(4, _TEXT) + _HEVC_SLICE),
    (
        MPEG2MPML,
        b"\x00\x00\x01\xb3\x14\x00\xf0\x23\x00\x00\x01\xb2"
        + _TEXT
        + b"\x00\x00\x01\x00\x00\x0f"
        + bytes(range(1, 200)),
    ),
]


def _ts_packet(pid: int, payload: bytes) -> bytes:
    """One transport stream packet of ``pid`` (a unit's start), filled out by stuffing."""
    stuffing = b"\x00" + b"\xff" * (182 - len(payload))  # an adaptation field's
    return bytes([0x47, 0x40 | pid >> 8, pid & 0xFF, 0x30, len(stuffing)]) + stuffing + payload


_VIDEO_STREAMS.append(  # a program stream: MPEG-2 user data cut by a PES packet's header
    (
        MPEG2MPML,
        b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01\x01\x89\xc3\xf8"  # a pack, then a PES
        b"\x00\x00\x01\xe0\x00\x30\x81\x80\x05\x21\x00\x01\x00\x01"
        + _VIDEO_STREAMS[2][1][:40]
        + b"\x00\x00\x01\xe0"
        + (len(_VIDEO_STREAMS[2][1]) - 40 + 8).to_bytes(2, "big")
        + b"\x81\x80\x05\x21\x00\x01\x00\x01"
        + _VIDEO_STREAMS[2][1][40:],
    )
)
_VIDEO_STREAMS += [  # user data that another SEI message nests: MVC's, HEVC's scalable
    (MPEG4HP41, _H264 + _message(37, b"\x40" + _message(5, _UUID + _TEXT)) + _H264_SLICE),
    (HEVCMP51, _HEVC + _message(133, b"\x20" + _message(4, _TEXT)) + _HEVC_SLICE),
]
_VIDEO_STREAMS.append(  # a transport stream: a service's name, and the H.264 stream's SEI
    (
        MPEG4HP41,
        _ts_packet(0x11, b"\x00\x42\xb0\x40\x00\x01\xc1\x00\x00\x48\x30\x01\x00" + _TEXT)
        + _ts_packet(0x100, b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00" + _VIDEO_STREAMS[0][1][:170])
        + _ts_packet(0x100, _VIDEO_STREAMS[0][1][170:330]),
    )
)

_VIDEO_STREAMS.append(  # a transport stream's data streams: ID3 (private stream 1), metadata
    (
        MPEG4HP41,
        _ts_packet(  # a program map table: PID 101 is metadata in PES packets (its CRC zeros)
            0x1000,
            b"\x00\x02\xb0\x12\x00\x01\xc1\x00\x00\xe1\x00\xf0\x00\x15\xe1\x01\xf0\x00" + bytes(4),
        )
        + _ts_packet(0x101, b"\x00\x00\x01\xbd\x00\x00\x80\x00\x00ID3\x04TIT2" + _TEXT)
        + _ts_packet(0x102, b"\x00\x00\x01\xfc\x00\x00\x80\x00\x00" + _TEXT)
        + _ts_packet(0x100, b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00" + _VIDEO_STREAMS[0][1][:170]),
    )
)


def _box(kind: bytes, payload: bytes, *, full: bool = False) -> bytes:
    """An ISO box (``full``: version 0 and no flags before its payload)."""
    payload = bytes(4 * full) + payload
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def _trak(handler: bytes, entry: bytes, at: int, size: int) -> bytes:
    """An MP4 track of one sample of ``size`` bytes at ``at``."""
    table = _box(b"stsd", b"\x00\x00\x00\x01" + entry, full=True)
    table += _box(b"stsz", struct.pack(">LLL", 0, 1, size), full=True)
    table += _box(b"stsc", struct.pack(">LLLL", 1, 1, 1, 1), full=True)
    table += _box(b"stco", struct.pack(">LL", 1, at), full=True)
    hdlr = _box(b"hdlr", bytes(4) + handler + bytes(13), full=True)
    return _box(b"trak", _box(b"mdia", hdlr + _box(b"minf", _box(b"stbl", table))))


def _mp4() -> bytes:
    """An MP4 file: a subtitle sample, then an H.264 sample's SEI, each holding text.

    Its movie box last.
    """
    subtitle = len(_TEXT).to_bytes(2, "big") + _TEXT
    sei = b"\x06" + _message(5, _UUID + _TEXT) + b"\x80"
    picture = len(sei).to_bytes(4, "big") + sei + (len(_H264_SLICE) - 4).to_bytes(4, "big")
    picture += _H264_SLICE[4:]
    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1")
    at = len(ftyp) + 8
    avc = _box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00")
    moov = _box(
        b"moov",
        _trak(b"text", _box(b"tx3g", bytes(38)), at, len(subtitle))
        + _trak(b"vide", _box(b"avc1", bytes(78) + avc), at + len(subtitle), len(picture)),
    )
    return ftyp + _box(b"mdat", subtitle + picture) + moov


_VIDEO_STREAMS.append((MPEG4HP41, _mp4()))


def _segment(marker: int, payload: bytes) -> bytes:
    """A JPEG marker segment."""
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


# a JPEG whose Exif and comment hold text: a still frame (its fragments cut in the Exif), and
# an MP4 file's Motion JPEG sample
_JPEG = (
    b"\xff\xd8"
    + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    + _segment(0xE1, b"Exif\x00\x00" + _TEXT)
    + _segment(0xFE, _TEXT)
    + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    + bytes(range(1, 200))
    + b"\xff\xd9"
)


def _motion_jpeg() -> bytes:
    """An MP4 file of one Motion JPEG sample, its movie box first."""
    ftyp = _box(b"ftyp", b"qt  \x00\x00\x02\x00qt  ")
    moov = _box(b"moov", _trak(b"vide", _box(b"jpeg", bytes(78)), 0, len(_JPEG)))
    at = len(ftyp) + len(moov) + 8
    moov = _box(b"moov", _trak(b"vide", _box(b"jpeg", bytes(78)), at, len(_JPEG)))
    return ftyp + moov + _box(b"mdat", _JPEG)


_VIDEO_STREAMS += [(MPEG4HP41, _motion_jpeg()), (JPEGBaseline8Bit, _JPEG)]


def _jp2() -> bytes:
    """A JP2 file whose XML, UUID box, JPX label and codestream comment hold text."""
    siz = _segment(0x51, b"\x00\x00" + b"\x00\x00\x00\x10" * 8 + b"\x00\x01\x07\x01\x01")
    codestream = b"\xff\x4f" + siz + _segment(0x64, b"\x00\x01" + _TEXT)
    codestream += b"\xff\x93" + bytes(range(1, 200)) + b"\xff\xd9"
    return (
        _box(b"jP  ", b"\r\n\x87\n")
        + _box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
        + _box(b"xml ", b"<owner>" + _TEXT + b"</owner>")
        + _box(b"uuid", _UUID + _TEXT)
        + _box(b"asoc", _box(b"lbl ", _TEXT))
        + _box(b"jp2c", codestream)
    )


_VIDEO_STREAMS.append((JPEG2000Lossless, _jp2()))  # a wrapped JP2 file, cut in its XML


def _video(ts: str, stream: bytes) -> bytes:
    """A video object of ``stream`` in two fragments, the first cut inside its text."""
    ds = make_instance(5, 1, 1, 1, marker=MARK, rows=16, columns=16)
    assert str(ds.PatientName).encode() == _NAME  # noqa: S101 - the texts hold it
    ds.file_meta.TransferSyntaxUID = ts
    cut = stream.index(b"Doe") & ~1
    ds.PixelData = encapsulate([stream[:cut], stream[cut:]])
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 1
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def damage(
    rng: random.Random, mutator: str, found: dict[str, list[bytes]], tags: list[int]
) -> bytes:
    """One damaged object of ``found``'s bases.

    Bytes anywhere, or (``structured``) whole elements (VR bytes in explicit VR only), or
    (``values``) text holding the marker written where no value holds text, or
    (``charsets``) names in other character sets, and escape sequences inside texts.
    """
    encoding = rng.choice(["explicit", "explicit", "implicit", "big"])
    if mutator == "values":
        return planted(rng, rng.choice(found[encoding]), MARK.encode(), encoding=encoding)
    if mutator == "charsets":
        return recoded(rng, rng.choice(found[encoding]), MARK.encode(), encoding=encoding)
    if mutator == "structured" or (mutator == "both" and rng.randrange(2)):
        return damaged(rng, rng.choice(found[encoding]), tags, encoding=encoding)
    return mutated(rng, rng.choice(found[encoding] + found[VIDEO] * (encoding == "explicit")))


def judge(ctx: work.RunContext, i: int, data: bytes, markers: list[str]) -> tuple[str, str]:
    """(outcome, finding) of one object; the finding is "" where all is as it must be."""
    src = SourceFile(f"src-{i}", f"/archive/{MARK}/{i}.dcm", len(data), lambda: data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = work.prepare(src, ctx)
            outcome = work.index(prepared, ctx)
    except (SourceError, DeidError) as e:
        return e.reason, refusal_finding(e, data, markers)
    except Exception as e:  # noqa: BLE001 - what the fuzz is for
        return "escaped", f"{type(e).__name__} escaped: {traceback.format_exc(limit=-3)}"
    if refused := unstorable(outcome.record):
        return "indexed", f"its index rows would be refused: {refused}"
    copy = b"".join(bytes(part) for part in prepared.encoded.parts)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            original = work.read_dataset(data)
            values = verify.identifying_values(ctx.plan, original)
            out = pydicom.dcmread(io.BytesIO(copy))
            leaks = verify.find_leaks(values, out, generated=prepared.result.generated)
    except (SourceError, DeidError) as e:
        return "indexed", f"verify cannot read what the ingest indexed ({e.reason})"
    except Exception as e:  # noqa: BLE001 - what the fuzz is for
        return "indexed", f"verify: {type(e).__name__} escaped"
    if leaks:
        return "indexed", f"verify finds {len(leaks)} leak(s) the ingest let through"
    if _pixels(original) and not _pixels(out):
        return "indexed", "the copy holds no pixel data, and the original does"
    if not any(m.encode() in copy for m in markers):
        return "indexed", ""
    with warnings.catch_warnings():  # (pydicom's, on reading an odd value: errors under pytest)
        warnings.simplefilter("ignore")
        if held := _in_a_value(out, markers):
            return "indexed", f"a marker kept in a {held} value (no such value holds text)"
        where = _where(out, markers, ctx.plan, values)
    return f"indexed (a marker {where})", ""


def _pixels(ds: pydicom.Dataset) -> bool:
    """Whether ``ds`` holds pixel data (integer, float or double float), as stored."""
    return any(tag in ds._dict for tag in BULK_TAGS)  # noqa: SLF001 - as stored


def _where(out: pydicom.Dataset, markers: list[str], plan: Plan, values: dict[str, str]) -> str:
    """Where a marker stays in a copy (``_marked_where``), told more closely."""
    where = _marked_where(out, markers)
    if where == "under a kept attribute" and _kept_by_options(out, markers, plan):
        return "under an attribute an option or rule keeps"
    if where == "in image data" and _own_value_in(out, values, markers):
        return "in image data, in one of the object's identifying values"
    return where


def _own_value_in(out: pydicom.Dataset, values: dict[str, str], markers: list[str]) -> bool:
    """Whether a value of the original holding a marker lies in the copy's pixel data.

    Neither check found it there: the bytes are no header they read (a unit whose start
    code is damaged, a data stream's packet of no length). Worth a look: a reader may show
    them (damage that stopped a walk, which decoders pass over, did).
    """
    value = getattr(out.get(PIXEL_DATA), "value", None)
    if not isinstance(value, bytes):
        return False
    return any(
        v.encode("utf-8", "replace") in value for v in values if any(m in v for m in markers)
    )


def refusal_finding(e: SourceError | DeidError, data: bytes, markers: list[str]) -> str:
    """What is wrong with refusing ``data`` so ("": nothing)."""
    if any(m in str(e) for m in markers):
        return "a marker in its message"
    if e.reason == "unexpected_error":
        return f"an error no check foresaw: {e}"
    if isinstance(e, DeidError) and e.reason == "invalid_element" and reads_whole(data):
        return f"refused, though pydicom reads every element: {e}"
    return ""


def reads_whole(data: bytes) -> bool:
    """Whether pydicom, read as the ingest reads (leniently), gives every element's value.

    The ingest read such an object, then could not de-identify one of its values: no
    damage, but a value the engine did not foresee (a date its shift takes out of the
    calendar, say), and the object lost for nothing.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            _read_all(ds.file_meta)
            _read_all(ds)
    except Exception:  # noqa: BLE001 - whatever pydicom raises, it does not read it
        return False
    return True


def _read_all(ds: pydicom.Dataset) -> None:
    for element in ds:  # (converted as each is given)
        if element.VR == "SQ":
            for item in element.value:
                _read_all(item)


INTEGER_COLUMNS = ("series_number", "instance_number", "rows", "columns", "number_of_frames")


def unstorable(record: IndexRecord) -> str:
    """What in an object's index rows PostgreSQL or MongoDB would refuse ("": nothing).

    Such a row failed the batch it came in, and with it the run: an integer column past
    PostgreSQL's ``integer``, a header that is no JSON (NaN, infinity), or one that holds an
    integer past 64 bits (no MongoDB document holds it).
    """
    for row in (record.series, record.instance):
        for column in INTEGER_COLUMNS:
            if row.get(column) is not None and not -(2**31) <= row[column] < 2**31:
                return f"{column} past PostgreSQL's integer"
    try:
        header = json.loads(record.instance["header"], parse_constant=_no_number)
    except ValueError:
        return "a header that is no JSON"
    try:
        bson.encode({"header": header})
    except (OverflowError, bson.errors.InvalidDocument):
        return "a header no MongoDB document holds"
    return ""


def _no_number(word: str) -> None:
    raise ValueError(word)


def _marked_where(out: pydicom.Dataset, markers: list[str]) -> str:
    """Where a marker stays in a copy.

    In its frames' headers kept, or their image data; else under a kept attribute.
    """
    stored = out.get(PIXEL_DATA)
    value = getattr(stored, "value", None)
    if not isinstance(value, bytes) or not any(m.encode() in value for m in markers):
        return "under a kept attribute"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        headers = frames.headers(value, video.video_codec(out))
    return (
        "in a kept frame header"
        if any(m.encode() in headers for m in markers)
        else ("in image data")
    )


def _in_a_value(ds: pydicom.Dataset, markers: list[str]) -> str:
    """The VR of an element of ``ds`` (any depth) of ``VALUE_VRS`` holding a marker, or "".

    An element pydicom cannot read is passed over: it holds no marker for that (an IS
    "1e400").
    """
    held = _holders(ds, markers, unreadable=False)
    return next((vr for _, vr in held if vr in VALUE_VRS), "")


BASIC = build_plan(())


def _kept_by_options(out: pydicom.Dataset, markers: list[str], plan: Plan) -> bool:
    """Whether each element of ``out`` holding a marker is kept by an option or rule alone.

    Kept by ``plan``, and not by the basic profile: those hold a marker by design (the
    bases plant one in each). The rest are what a damaged tag renamed to a kept attribute,
    or what the engine left that it should not have: worth a look.
    """
    holders = list(_holders(out, markers))
    return bool(holders) and all(
        _decision(plan, out, tag, vr) is Action.KEEP
        and _decision(BASIC, out, tag, vr) is not Action.KEEP
        for tag, vr in holders
    )


def _decision(plan: Plan, ds: pydicom.Dataset, tag: int, vr: str) -> Action | None:
    decided = decide(plan, ds, tag, vr)
    return decided.action if isinstance(decided, Decision) else None  # a rule that computes


def _holders(
    ds: pydicom.Dataset, markers: list[str], *, unreadable: bool = True
) -> Iterator[tuple[int, str]]:
    """(tag, VR) of each element of ``ds`` (any depth) whose value holds a marker.

    Searched as stored (bytes), but sequences and implicit VR elements (read for their VRs);
    one pydicom cannot read counts as holding one, unless ``unreadable`` is False.
    """
    for tag in ds.keys():  # noqa: SIM118 - a Dataset's own keys, as stored
        stored = ds.get_item(tag)
        try:
            element = ds[tag] if stored.VR in ("SQ", None) else stored  # None: implicit VR
        except Exception:  # noqa: BLE001 - the fuzz's own odd values
            if unreadable:
                yield int(tag), str(stored.VR)
            continue
        if element.VR == "SQ":
            for item in element.value or ():
                yield from _holders(item, markers, unreadable=unreadable)
        elif tag != PIXEL_DATA:
            value = element.value
            data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
            if any(m.encode() in data for m in markers):
                yield int(tag), str(element.VR)


def run(
    objects: int,
    seed: int,
    mutator: str,
    *,
    save: Path | None = None,
    progress: Callable[[int], None] | None = None,
    options: tuple[str, ...] = (),
    rules: RuleSet | None = None,
) -> Report:
    """Fuzz ``objects`` objects from ``seed``; what was found.

    ``options``: PS3.15 options the plan applies (dates shifted, values kept), besides the
    basic profile; ``rules``: site rules over them (dateshift, perturb, substitute, ...).
    """
    work.configure_pydicom()
    found, markers = bases()
    tags = [row.tag.value for row in load_table() if row.tag.mask == EXACT]
    rng = random.Random(seed)  # noqa: S311 - a reproducible stream of test inputs
    report = Report()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        store = LocalStore(Path(tmp) / "out")
        plan = build_plan(options, rules=rules)
        ctx = work.RunContext(plan, run_keys(seed), store, "DI", 30, 1)
        report.key_id = ctx.keys.pseudonym_id
        try:
            for i in range(objects):
                data = damage(rng, mutator, found, tags)
                outcome, finding = judge(ctx, i, data, markers)
                report.outcomes[outcome] += 1
                if finding:
                    report.findings.append((i, finding))
                    if save is not None:
                        save.mkdir(parents=True, exist_ok=True)
                        (save / f"seed{seed}-{i}.dcm").write_bytes(data)
                if progress is not None:
                    progress(i + 1)
        finally:
            store.close()
            work.clear_caches()
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz; print what it found; 1 when there is a finding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000, help="objects (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="the stream's seed (default 1)")
    parser.add_argument(
        "--mutator",
        choices=("bytes", "structured", "both", "values", "charsets"),
        default="both",
        help="(both: bytes or structured; values: text where no value holds text; "
        "charsets: names in other character sets, ISO 2022 escapes inside texts)",
    )
    parser.add_argument("--save", type=Path, help="save each finding's object here")
    parser.add_argument("--progress", action="store_true", help="a line every 1,000 objects")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME",
        help="a PS3.15 option of the plan, as ingest takes it (repeatable)",
    )
    parser.add_argument(
        "--rules", type=Path, metavar="FILE", help="a site rules file, as ingest takes it"
    )
    args = parser.parse_args(argv)
    try:
        parse_options(args.option)
        rules = rules_file.load(args.rules) if args.rules else None
    except (ValueError, RuleError) as e:
        parser.error(str(e))
    start = time.monotonic()

    def progress(done: int) -> None:
        if done % 1000 == 0:
            rate = done / (time.monotonic() - start)
            print(f"{done:,} objects, {rate:,.0f}/s", file=sys.stderr, flush=True)

    report = run(
        args.objects,
        args.seed,
        args.mutator,
        save=args.save,
        progress=progress if args.progress else None,
        options=tuple(args.option),
        rules=rules,
    )
    plan = "".join(f"; {name}" for name in args.option)
    plan += f"; rules {args.rules.name}" if args.rules else ""
    print(f"seed {args.seed}, {args.objects:,} objects ({args.mutator}{plan}):")
    for outcome, n in report.outcomes.most_common():
        print(f"  {n:7,}  {outcome}")
    for i, finding in report.findings:
        print(f"finding: object {i}: {finding}")
    print(f"{len(report.findings)} finding(s)")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
