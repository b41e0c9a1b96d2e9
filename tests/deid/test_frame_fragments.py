"""A JPEG frame in several fragments: its header's text blanked and searched across them.

DICOM lets a writer split a frame into fragments of any (even) size. A photograph's Exif
(a camera's maker notes, an owner's name, places: up to 64 KiB) can then run past its first
fragment. The segment a fragment's end cuts is blanked on into the next fragment, and the
header searched on, held and streamed alike.
"""

from __future__ import annotations

import io
import itertools
import random

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from indexer import work
from indexer.deid import frames, verify
from indexer.errors import DeidError
from indexer.spans import FileSpan, version_of
from tests.builders import make_instance, streamed_copy
from tests.deid.test_frames import (
    ADOBE,
    COMMENT,
    EXIF,
    IMAGE,
    JFIF,
    MARK,
    PLAN,
    _blanked,
    _copy,
    _even,
    _jpeg,
    _refused,
    _seg,
    _streamed,
)

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways")

MAKER = _seg(0xE1, b"Exif\x00\x00" + b"\x00" * 300 + MARK + b" owner" + b"\x00" * 300)
FIRST = _jpeg(JFIF, MAKER, COMMENT)
SECOND = _jpeg(ADOBE, EXIF)


def _blanked_first() -> bytes:
    return _jpeg(JFIF, _blanked(MAKER, b"\x00"), _blanked(COMMENT, b" "))


def _blanked_second() -> bytes:
    return _jpeg(ADOBE, _blanked(EXIF, b"\x00"))


def _in_pieces(frame: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    """``frame`` (of even length) cut at ``cuts`` (even), each piece a fragment."""
    return [frame[a:z] for a, z in itertools.pairwise([0, *cuts, len(frame)])]


def _value(*frames_in_pieces: list[bytes]) -> bytes:
    """Encapsulated frames, each of the fragments given (an empty Basic Offset Table)."""
    return encapsulate([piece for pieces in frames_in_pieces for piece in pieces])


def _cuts(frame: bytes, seed: int) -> list[tuple[int, ...]]:
    """Every even cut of ``frame``'s first 700 bytes (its header), and 40 triple cuts."""
    even = range(2, min(len(frame), 700), 2)
    rng = random.Random(seed)  # noqa: S311 - a seeded stream of test inputs
    return [(c,) for c in even] + [tuple(sorted(rng.sample(even, 3))) for _ in range(40)]


def _joined(value: bytes) -> bytes:
    return b"".join(value[a:z] for a, z in frames.fragments(value))


def test_a_frames_header_cut_by_its_fragments_is_blanked_held_and_streamed(tmp_path):
    """Cut anywhere in its header (a segment's marker, its length, its text), by one or
    more fragments: the frame as blanked whole, held and streamed alike. `verify`'s search
    of the source finds the name the cut parts; of the copy, nothing."""
    assert len(FIRST) % 2 == 0
    for cut in _cuts(FIRST, 20261206):
        value = _value(_in_pieces(FIRST, cut), [SECOND])
        held, _count = frames.blank(value)
        copy, found = _streamed(tmp_path, value, None)
        assert _joined(held) == _blanked_first() + _even(_blanked_second()), cut
        assert copy == held, cut
        assert MARK + b" owner" in frames.headers(value), cut
        assert MARK + b" owner" in found, cut
        assert MARK not in frames.headers(held), cut
        assert MARK not in _streamed(tmp_path, held, None)[1], cut


def test_each_frame_in_fragments_is_walked_from_its_own_start():
    """Two frames, each in three fragments: the second's walk begins at its start (a
    fragment that begins a JPEG), not where the first's ended. A fragment after a header
    that ended (image data) is read as no header: its bytes, a segment's look-alike among
    them, stay."""
    image_like = _seg(0xFE, MARK + b"!")  # in image data: no segment
    first = FIRST[:-2] + image_like + b"\xff\xd9"  # (before the end of the image)
    assert len(first) % 2 == 0
    value = _value(_in_pieces(first, (40, len(first) - 20)), _in_pieces(SECOND, (6, 30)))
    held, _count = frames.blank(value)
    want = _blanked_first()[:-2] + image_like + b"\xff\xd9" + _even(_blanked_second())
    assert _joined(held) == want
    assert _joined(held).count(MARK) == 1


def _object(value: bytes, **attrs: object) -> bytes:
    """A one-frame object whose Pixel Data is ``value`` (its frame in several fragments)."""
    ds = make_instance(rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = value
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 1
    for k, v in attrs.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_an_objects_frame_in_fragments_is_blanked_held_and_streamed_alike(tmp_path, monkeypatch):
    """Through the ingest's own read, de-identification and copy: held, and streamed in
    chunks of 7 bytes, the same copy, which holds no text of the Exif."""
    data = _object(_value(_in_pieces(FIRST, (100, 400))))
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked)
    assert copy == whole
    assert MARK not in copy
    assert IMAGE in copy
    value = pydicom.dcmread(io.BytesIO(copy)).PixelData
    assert _joined(value) == _blanked_first()


def test_a_name_a_fragments_end_cuts_in_a_kept_segment_is_caught(tmp_path):
    """A patient's name in an ICC profile's segment (kept: decoders read it), cut in two by
    the fragments: the ingest refuses the object, and `verify` finds it in the copy."""
    name = b"PHIMARKPNZYXWVU"  # one component: the cut leaves no part of it whole
    icc = _seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + name + b"\x00")
    frame = _jpeg(JFIF, icc)
    cut = frame.index(name) + 8
    assert cut % 2 == 0
    data = _object(_value(_in_pieces(frame, (cut,))), PatientName=name.decode())
    assert b"PHIMARK" not in _refused(tmp_path, data).encode()
    values = verify.identifying_values(PLAN, work.read_dataset(data))
    leaks = verify.find_leaks(values, work.read_dataset(_copy(data)))
    assert ("(0010,0010)", "compressed frame headers (utf-8)") in [
        (leak.source_path, leak.found_in) for leak in leaks
    ]


def test_a_name_a_fragments_end_cuts_is_caught_as_the_frame_streams(tmp_path):
    """Streamed, the header's bytes before a fragment's end are searched again with the
    next fragment's: a name cut in two there stops the copy."""
    name = b"PHIMARKPNZYXWVU"  # one component: the cut leaves no part of it whole
    frame = _jpeg(JFIF, _seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + name + b"\x00"))
    value = _value(_in_pieces(frame, (frame.index(name) + 8,)))
    assert (frame.index(name) + 8) % 2 == 0
    path = tmp_path / "frames"
    path.write_bytes(value)
    span = FileSpan(path, 0, len(value), version_of(path.stat()))
    found = frames.Blanked(span, 0, len(value), check=lambda b: "(0010,0010)" * (name in b))
    with pytest.raises(DeidError, match=r"header \(from \(0010,0010\)\)"):
        b"".join(found.chunks())
    plain = frames.Blanked(span, 0, len(value), check=lambda _b: None)
    assert b"".join(plain.chunks()) == value  # nothing else stops it


def test_damaged_frames_in_fragments_are_blanked_held_and_streamed_alike(tmp_path):
    """Damaged JPEGs (a length, a marker changed; cut short), each frame in up to four
    fragments cut at random: held and streamed give the same copy, and only zeros and
    spaces are written."""
    rng = random.Random(20261208)  # noqa: S311 - a seeded stream of test inputs
    bases = [FIRST, SECOND, _jpeg(JFIF, EXIF, MAKER), b"\xff\xd8\xff\xff" + FIRST[2:]]
    for _ in range(300):
        pieces = []
        for _frame in range(rng.randrange(1, 4)):
            frame = bytearray(rng.choice(bases))
            for _ in range(rng.randrange(3)):
                frame[rng.randrange(len(frame))] = rng.choice((0, 1, 0xFF, rng.randrange(256)))
            frame = frame[: rng.randrange(2, len(frame) + 1)]
            cuts = sorted({rng.randrange(1, len(frame)) for _ in range(rng.randrange(4))})
            pieces.append(_in_pieces(bytes(frame), tuple(cuts)))
        value = _value(*pieces)
        held, _count = frames.blank(value)
        copy, _found = _streamed(tmp_path, value, None)
        assert copy == held
        assert len(held) == len(value)
        assert all(n in (o, 0, 0x20) for o, n in zip(value, held, strict=True))
