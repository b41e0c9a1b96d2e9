"""An MP4 file's tracks of text and metadata: their samples zeroed, held and streamed.

A recorder or a phone may write, beside the video, a track of subtitles or captions (a
title, a name), of timed metadata (a phone's places, a camera's settings), or of timecode
(the time of day it recorded). Their samples lie in the media data, which no box rule
reaches: they are zeroed whole. The samples of video and audio tracks stay (those of H.264
and HEVC read for their SEI).
"""

from __future__ import annotations

import itertools
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from indexer.deid import blanks, frames, mp4, video
from indexer.deid.jpeg import JPEG
from indexer.deid.places import KEPT, ZEROED, Places
from tests.builders import streamed_copy
from tests.deid.test_frames import (
    MARK,
    SLICE,
    TEXT,
    UUID,
    _box,
    _copy,
    _cut_into,
    _escaped,
    _even,
    _frames_of,
    _full,
    _mp4_cuts,
    _nal,
    _object,
    _rbsp,
    _spaced,
    _streamed,
    walked_anyhow,
)

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways", "fragments_as_they_come")

SUBTITLE = b"\x00\x19PHIMARK Doe^Jane, bed 4"  # a 3GPP text sample: its length, its text
PLACE = b"PHIMARK +48.8577+002.2950/"  # a phone's timed metadata
SOUND = b"\xff\xf1PHIMARK in sound"  # audio: kept as it is
# an image sequence's sample (HEIF's): a JPEG, the marker in its scan's data (kept; no value
# of the object, which all frame bytes are searched for: ``test_frame_data_searched``)
PICTURE = b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00PHIMARK an image sequence's"
OTHER_CODEC = b"PHIMARK mpeg-4 part 2"  # a sample of another video codec's: kept unread
AVC = _box(
    b"avc1", bytes(6) + b"\x00\x01" + bytes(70) + _box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00")
)
SEI = _nal(b"\x06" + _escaped(_rbsp((5, UUID + MARK + TEXT)))) + _nal(SLICE)
SEI_SPACED = _nal(b"\x06" + _escaped(_rbsp((5, UUID + _spaced(MARK + TEXT))))) + _nal(SLICE)
SECOND = _nal(b"\x41\x9a" + b"\x12" * 20)


Track = tuple[bytes | None, bytes, list[list[bytes]]]  # handler, sample entry, chunks


def _tracks(*, blanked: bool = False) -> list[Track]:
    """(handler, sample entry, chunks of samples) of each track, in the movie's order: text
    first (its samples zeroed), then video, audio, metadata, a track naming no handler, and
    a video track of another codec. ``blanked``: as a copy holds them."""

    def zeroed(sample: bytes) -> bytes:
        return bytes(len(sample)) if blanked else sample

    return [
        (b"text", _box(b"tx3g", bytes(38)), [[zeroed(SUBTITLE), zeroed(SUBTITLE[:2] + b"x")]]),
        (b"vide", AVC, [[SEI_SPACED if blanked else SEI], [SECOND]]),
        (b"soun", _box(b"mp4a", bytes(28)), [[SOUND]]),
        (b"meta", _box(b"mebx", bytes(8)), [[zeroed(PLACE)]]),
        (None, _box(b"abcd", bytes(8)), [[zeroed(PLACE + b"?")]]),
        (b"vide", _box(b"mp4v", bytes(78)), [[OTHER_CODEC]]),
        (b"pict", _box(b"jpeg", bytes(78)), [[PICTURE]]),
    ]


def _trak(
    track: int,
    handler: bytes | None,
    entry: bytes,
    offsets: list[int],
    sizes: list[int],
    per_chunk: int,
) -> bytes:
    table = _full(b"stsd", b"\x00\x00\x00\x01" + entry)
    table += _full(b"stsz", struct.pack(f">LL{len(sizes)}L", 0, len(sizes), *sizes))
    table += _full(b"stsc", struct.pack(">LLLL", 1, 1, per_chunk, 1))
    table += _full(b"stco", struct.pack(f">L{len(offsets)}L", len(offsets), *offsets))
    hdlr = b"" if handler is None else _full(b"hdlr", bytes(4) + handler + bytes(12) + b"\x00")
    tkhd = _full(b"tkhd", bytes(8) + struct.pack(">L", track) + bytes(68))
    return _box(b"trak", tkhd + _box(b"mdia", hdlr + _box(b"minf", _box(b"stbl", table))))


def _file(
    *, blanked: bool = False, faststart: bool = False, tracks: list[Track] | None = None
) -> bytes:
    """An MP4 file of ``tracks`` (``_tracks``' if none), their chunks interleaved in the
    media data (the first chunk of each track, then the second ...); its movie box last, or
    first."""
    tracks = _tracks(blanked=blanked) if tracks is None else tracks
    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1")
    order = [
        (t, c)
        for c in range(max(len(chunks) for *_x, chunks in tracks))
        for t, (*_x, chunks) in enumerate(tracks)
        if c < len(chunks)
    ]
    data = b"".join(b"".join(tracks[t][2][c]) for t, c in order)

    def moov(at: int) -> bytes:
        offsets: dict[int, list[int]] = {}
        for t, c in order:
            offsets.setdefault(t, []).append(at)
            at += len(b"".join(tracks[t][2][c]))
        return _box(
            b"moov",
            b"".join(
                _trak(
                    t + 1,
                    handler,
                    entry,
                    offsets[t],
                    [len(s) for chunk in chunks for s in chunk],
                    len(chunks[0]),
                )
                for t, (handler, entry, chunks) in enumerate(tracks)
            ),
        )

    if faststart:
        return ftyp + moov(len(ftyp) + len(moov(0)) + 8) + _box(b"mdat", data)
    return ftyp + _box(b"mdat", data) + moov(len(ftyp) + 8)


def _fragmented(*, blanked: bool = False) -> bytes:
    """A fragmented file: a movie box of a text and a video track (empty tables), then a
    movie fragment placing two text samples and the video's two, then its media data."""
    text = [bytes(len(SUBTITLE)), bytes(3)] if blanked else [SUBTITLE, SUBTITLE[:2] + b"x"]
    pictures = [SEI_SPACED if blanked else SEI, SECOND]
    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso6")
    empty = [(b"text", _box(b"tx3g", bytes(38))), (b"vide", AVC)]
    traks = b"".join(_trak(i + 1, h, e, [], [], 1) for i, (h, e) in enumerate(empty))
    moov = _box(b"moov", traks + _box(b"mvex", _full(b"trex", struct.pack(">5L", 1, 1, 0, 0, 0))))

    def moof(data: int) -> bytes:
        """``data``: where the media data's first byte lies, from the fragment's start."""
        trafs = b""
        for track, samples in ((1, text), (2, pictures)):
            header = _full(b"tfhd", struct.pack(">L", track), flags=0x20000)
            sizes = [len(s) for s in samples]
            run = struct.pack(">Ll2L", 2, data, *sizes)
            trafs += _box(b"traf", header + _full(b"trun", run, flags=0x201))
            data += sum(sizes)
        return _box(b"moof", _full(b"mfhd", b"\x00\x00\x00\x01") + trafs)

    mdat = _box(b"mdat", b"".join(text + pictures))
    return ftyp + moov + moof(len(moof(0)) + 8) + mdat


def test_held_text_metadata_and_unnamed_tracks_samples_are_zeroed_the_rest_kept():
    """Subtitles, a phone's timed metadata and a track naming no handler: zeroed whole, the
    text track's two samples of one chunk alike. The H.264 track's SEI is blanked; the
    audio's, the other video codec's and an image sequence's samples stay as they are."""
    for faststart in (False, True):
        source = _file(faststart=faststart)
        (frame,) = _frames_of(_copy(_object(source, ts=uid.MPEG4HP41)))
        assert frame == _even(_file(blanked=True, faststart=faststart))
        assert frame.count(b"PHIMARK") == 3  # the audio's, the MPEG-4 part 2 video's, HEIF's


def test_a_fragmented_files_text_samples_are_zeroed():
    """Samples a movie fragment's runs place, of a track the movie box names as text."""
    (frame,) = _frames_of(_copy(_object(_fragmented(), ts=uid.MPEG4HP41)))
    assert frame == _even(_fragmented(blanked=True))
    assert b"PHIMARK" not in frame


@pytest.mark.parametrize("name", ["last", "faststart", "fragmented"])
def test_streamed_text_samples_cut_anywhere_are_zeroed_as_held(tmp_path, name):
    """A streamed file in fragments cut anywhere (in a subtitle, between a chunk's two
    samples, in the movie box at the end, read ahead): the held copy. `verify`'s walk of the
    source finds the subtitle's text, and of the copy, none."""
    if name == "fragmented":
        source, blanked = _fragmented(), _fragmented(blanked=True)
    else:
        fast = name == "faststart"
        source, blanked = _file(faststart=fast), _file(blanked=True, faststart=fast)
    streamed_as_held(tmp_path, source, blanked, SUBTITLE[2:], 20261208)


def streamed_as_held(tmp_path: Path, source: bytes, blanked: bytes, text: bytes, seed: int) -> None:
    """``source`` in fragments cut anywhere (``_mp4_cuts``) is blanked streamed as held, to
    ``blanked``; `verify`'s walk finds ``text`` in the source, and in the copy not."""
    for cut in _mp4_cuts(source, seed):
        value = _cut_into(source, cut)
        held, _count = frames.blank(value, video.H264)
        copy, found = _streamed(tmp_path, value, video.H264)
        assert b"".join(copy[a:z] for a, z in frames.fragments(copy)) == _even(blanked), cut
        assert copy == held, cut
        assert text in found, cut
        assert text not in _streamed(tmp_path, copy, video.H264)[1], cut


def test_verify_searches_a_text_track_an_older_copy_left():
    """A copy that kept its subtitles (another tool's, or this one's before): the leak
    check's header bytes hold them, held and as the walk reads them."""
    source = _file()
    assert SUBTITLE[2:] in frames.headers(encapsulate([source]), video.H264)
    assert PLACE in frames.headers(encapsulate([source]), video.H264)
    assert PLACE not in frames.headers(encapsulate([_file(blanked=True)]), video.H264)


def test_video_tracks_are_given_room_first_and_samples_past_it_are_zeroed(monkeypatch):
    """At most ``MP4_SAMPLES`` samples are held at once; a movie box's text track, listed
    first, takes none of the video tracks' room, and tracks kept unread (audio) come before
    the zeroed ones. A sample past the room is zeroed, as media data no sample places."""

    def copied(room: int) -> bytearray:
        monkeypatch.setattr(mp4, "MP4_SAMPLES", room)
        copy = bytearray(source)
        blanks.fill_in(copy, mp4.parse(source)[0])
        return copy

    source = _file()
    one = copied(1)
    assert SEI_SPACED in one  # the video's first sample read
    assert SECOND not in one  # its second: no room, zeroed
    assert SUBTITLE[2:] not in one
    assert SOUND not in one
    four = copied(4)  # the H.264 track's two, the image sequence's, the audio's chunk
    assert SEI_SPACED in four
    assert SECOND in four
    assert SOUND in four
    assert PICTURE in four
    assert OTHER_CODEC not in four  # the other video codec's: no room left


def test_merged_places_match_a_loop():
    """``Places.merged``: samples that overlap or touch made one, against a loop over them
    sorted (random places, some empty, some inside others)."""
    rng = random.Random(20261208)  # noqa: S311 - a seeded stream of test inputs
    for _ in range(500):
        starts = [rng.randrange(0, 60) for _ in range(rng.randrange(0, 12))]
        places = Places.of([(a, a + rng.randrange(0, 9), ZEROED, 0) for a in starts])
        expected: list[list[int]] = []
        for start, stop, *_kind in sorted(places, key=lambda p: p[0]):
            if expected and start <= expected[-1][1]:
                expected[-1][1] = max(expected[-1][1], stop)
            else:
                expected.append([start, stop])
        merged = places.merged()
        assert [[a, z] for a, z, *_k in merged] == expected
        assert set(merged.kinds.tolist()) <= set(places.kinds.tolist())
    one = Places.of([(5, 9, ZEROED, 0)])
    assert one.merged() is one
    assert np.array_equal(Places.none().merged().starts, [])


def test_zeroed_samples_take_no_more_than_their_chunks_in_the_walk():
    """A text track's samples of one chunk (an audio track's too) wait in a streamed walk as
    one place."""
    source = _file()
    at = source.index(b"moov") - 4
    ahead = mp4.samples_ahead(lambda a, n: source[a : a + n], at, 1 << 20)
    # the video's two, the image sequence's (a JPEG); the audio's chunk and the other video
    # codec's, kept; the text's chunk, the metadata's, the unnamed track's
    kinds = [video.H264] * 2 + [JPEG] + [KEPT] * 2 + [ZEROED] * 3
    assert [codec for _a, _z, codec, _s in ahead] == kinds


def test_damaged_files_with_zeroed_tracks_never_raise():
    """Damaged bytes anywhere (a handler, a table, a run), cut anywhere, held and streamed
    (read ahead or not, holding as little as 16 bytes): nothing raises, and only zeros and
    spaces are written."""
    only_blanks_written([_file(), _file(faststart=True), _fragmented()], 2000, 20261209)


def only_blanks_written(bases: list[bytes], count: int, seed: int) -> None:
    """``count`` files of ``bases`` damaged (1 to 3 bytes), cut short, held and walked in
    pieces (``walked_anyhow``): nothing raises, and only zeros and spaces are written."""
    rng = random.Random(seed)  # noqa: S311 - a seeded stream of test inputs
    for _ in range(count):
        file = bytearray(rng.choice(bases))
        for _ in range(rng.randrange(1, 4)):
            file[rng.randrange(len(file))] = rng.choice((0, 1, 0xFF, rng.randrange(256)))
        source = bytes(file[: rng.randrange(9, len(file) + 1)])
        held, _count = frames.blank(encapsulate([source]), video.H264)
        old = encapsulate([source])
        assert len(held) == len(old)
        assert all(n in (o, 0, 0x20) for o, n in zip(old, held, strict=True))
        walked = walked_anyhow(rng, source)
        assert all(n in (o, 0, 0x20) for o, n in zip(source, walked, strict=True))


@pytest.mark.parametrize("archive", [None, "video.tar.gz"])
def test_an_objects_text_track_is_zeroed_held_and_streamed_alike(tmp_path, monkeypatch, archive):
    """Through the ingest's own read, de-identification and copy: a file, or a compressed
    archive's member; held, and streamed in chunks of 7 bytes (its movie box at the end,
    read ahead). The copies are the same; neither holds the subtitle or the place."""
    data = _object(_file(), ts=uid.MPEG4HP41)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked, archive)
    assert copy == whole
    assert SUBTITLE[2:] not in copy
    assert PLACE not in copy
    assert SOUND in copy


EXIF = b"Exif\x00\x00MM PHIMARK Doe^Jane's phone"  # an item's data (HEIF's) a meta box places
OWN = b"PHIMARK a writer's own data"  # bytes a writer left in the media data


def _unplaced_file(
    *, blanked: bool = False, faststart: bool = False, to_end: bool = False
) -> bytes:
    """An MP4 file whose media data holds, beside its video's first sample and its audio's,
    a writer's bytes and an Exif item's data that no track places; then a box of a writer's
    own kind (media data too: a kind damage renamed reads so) holding the video's second
    sample and more of the writer's bytes. Its movie box last, or first (``faststart``).
    ``to_end``: one media data box of size 0 (to the file's end) holds all, after the
    movie box. ``blanked``: as its copy holds it."""

    def zeroed(value: bytes) -> bytes:
        return bytes(len(value)) if blanked else value

    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1")
    payload = zeroed(OWN) + (SEI_SPACED if blanked else SEI) + zeroed(EXIF) + SOUND
    mdat, own = _box(b"mdat", payload), _box(b"wrtr", SECOND + zeroed(OWN))
    if to_end:
        mdat, own = b"\x00\x00\x00\x00mdat" + payload + SECOND + zeroed(OWN), b""

    def moov(at: int) -> bytes:
        """``at``: where the media data box lies."""
        first = at + 8 + len(OWN)
        sound = first + len(SEI) + len(EXIF)
        second = at + 8 + len(payload) if to_end else at + len(mdat) + 8
        sizes = [len(SEI), len(SECOND)]
        video_track = _trak(1, b"vide", AVC, [first, second], sizes, 1)
        audio_track = _trak(2, b"soun", _box(b"mp4a", bytes(28)), [sound], [len(SOUND)], 1)
        return _box(b"moov", video_track + audio_track)

    if faststart or to_end:
        return ftyp + moov(len(ftyp) + len(moov(0))) + mdat + own
    return ftyp + mdat + own + moov(len(ftyp))


def test_media_data_no_sample_places_is_zeroed_and_the_samples_kept():
    """Bytes of the media data (and of a top-level box of a kind not known) that no track's
    sample places are read by no decoder: a meta box's items (HEIF's Exif), a writer's own
    data. They are zeroed; the video's samples are read (their SEI blanked), the audio's
    kept. `verify` searches them in a copy made before (which kept them)."""
    for faststart, to_end in ((False, False), (True, False), (False, True)):
        source = _unplaced_file(faststart=faststart, to_end=to_end)
        assert sorted(_placed(source)) == sorted([SEI, SECOND, SOUND])
        (frame,) = _frames_of(_copy(_object(source, ts=uid.MPEG4HP41)))
        assert frame == _even(_unplaced_file(blanked=True, faststart=faststart, to_end=to_end))
        assert SOUND in frame
        assert SECOND in frame
        assert b"PHIMARK" not in frame.replace(SOUND, b"")
        assert OWN in frames.headers(encapsulate([source]), video.H264)
        assert EXIF in frames.headers(encapsulate([source]), video.H264)


def _placed(source: bytes) -> list[bytes]:
    """The bytes of each sample the movie box of ``source`` places."""
    later: list[Places] = []
    mp4._parse(source, [], [], mp4.Movie(), later=later)
    return [source[a:z] for a, z, *_kind in Places.join(later)]


@pytest.mark.parametrize("how", ["last", "faststart", "to the end"])
def test_streamed_media_data_no_sample_places_is_zeroed_as_held(tmp_path, how):
    """Cut anywhere (in the writer's bytes, the Exif item's, a sample; the movie box at the
    end read ahead; a media data box to the file's end, past the first fragment): the held
    copy; `verify`'s walk finds the Exif item's text in the source (the bytes no sample
    places are searched), and in the copy not."""
    kind = {"faststart": True, "to_end": how == "to the end"} if how != "last" else {}
    source = _unplaced_file(**kind)
    blanked = _unplaced_file(blanked=True, **kind)
    streamed_as_held(tmp_path, source, blanked, EXIF[6:], 20261206)


def test_unplaced_bytes_streamed_match_those_held():
    """Random samples (overlapping, inside one another, past a buffer's end, of no bytes)
    and media data boxes, fed in random buffers: the bytes the walk's reader zeroes are
    exactly those of the media data that no sample holds, as ``mp4._unplaced`` finds them
    held, and as a loop over the bytes does."""
    rng = random.Random(20261206)  # noqa: S311 - a seeded stream of test inputs
    for _ in range(400):
        size = rng.randrange(4, 120)
        places = sorted(
            (a, a + rng.randrange(0, 30)) for a in (rng.randrange(size) for _ in range(6))
        )
        edges = sorted(rng.sample(range(size + 1), 2 * rng.randrange(0, 3)))
        media = list(zip(edges[::2], edges[1::2], strict=True))
        expected = {
            i
            for i in range(size)
            if any(a <= i < z for a, z in media) and not any(a <= i < z for a, z in places)
        }
        held = mp4._unplaced(media, Places.of([(a, z, KEPT, 0) for a, z in places]))
        assert {i for a, z in held for i in range(a, z)} == expected
        reader = mp4._Samples(blank=True)
        reader.expect(Places.of([(a, z, KEPT, 0) for a, z in places]))
        for a, z in media:
            reader.media(a, z)
        ends = sorted({0, size, *(rng.randrange(size) for _ in range(rng.randrange(4)))})
        buffers = [bytearray(b"\xff" * (z - a)) for a, z in itertools.pairwise(ends)]
        for at, buf in zip(ends, buffers, strict=False):
            reader.feed(buf, at)
        copy = b"".join(buffers)
        assert {i for i in range(size) if copy[i] == 0} == expected, (places, media, ends)


@pytest.mark.parametrize("kind", [b"wrtr", b"trak"])
def test_a_top_level_box_of_a_kind_not_known_is_media_data_as_it_streams(kind):
    """A top-level box of a kind that is no media data's nor any other top-level box's (a
    writer's own; a track, which lies only in a movie box) larger than the walk holds:
    media data, zeroed where no sample lies, whether the first buffer cuts it or it comes
    after; never opened, and its bytes not searched before they are zeroed (a value there
    would refuse the copy)."""
    inside = _box(b"abcd", MARK * 20)  # (a box in it, which a walk into it would keep)
    big = _box(kind, inside * 2)
    source = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1") + _box(b"mdat", b"\x12" * 8) + big
    copy = bytearray(source)
    blanks.fill_in(copy, mp4.parse(source)[0])
    head = len(source) - len(big)  # (the media data before it: no sample placed either)
    ftyp = source[: head - 16]
    assert copy == ftyp + _box(b"mdat", bytes(8)) + big[:8] + bytes(len(big) - 8)
    for cut in range(head - 12, len(source) - 1):
        walk = mp4.Mp4Walk(100)
        pieces = [bytearray(source[:cut]), bytearray(source[cut:])]
        found = [part for piece in pieces for part in walk.feed(piece)]
        assert b"".join(pieces) == copy, cut
        assert not any(MARK in part for part in found), cut


TAIL_HEAD = b"\x00\x00\x00\x03no box here!"  # a size below 8: no box; the walk stops


def _trailing_file(*, blanked: bool = False, faststart: bool = False) -> bytes:
    """An MP4 file whose boxes are followed by bytes that are no box (damage, a writer's
    trailer), among them the video's second sample; the movie box first, or last.
    ``blanked``: as its copy holds it (the bytes a header would take kept, the rest zeroed
    but the sample)."""

    def zeroed(value: bytes) -> bytes:
        return bytes(len(value)) if blanked else value

    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1")
    mdat = _box(b"mdat", SEI_SPACED if blanked else SEI)
    tail = TAIL_HEAD + zeroed(OWN) + SECOND + zeroed(OWN)

    def moov(first: int, second: int) -> bytes:
        return _box(b"moov", _trak(1, b"vide", AVC, [first, second], [len(SEI), len(SECOND)], 1))

    size = len(moov(0, 0))
    before = len(ftyp) + size + len(mdat) + len(TAIL_HEAD) + len(OWN)  # the second sample's
    if faststart:
        return ftyp + moov(len(ftyp) + size + 8, before) + mdat + tail
    return ftyp + mdat + moov(len(ftyp) + 8, before) + tail


@pytest.mark.parametrize("faststart", [False, True])
def test_bytes_past_where_the_box_walk_stops_are_media_data(tmp_path, faststart):
    """Bytes at the top level that are no box stop the walk: of them, those a box's header
    would take are kept, and the rest are media data: zeroed but the samples that lie there
    (they were kept, unsearched). Cut anywhere, streamed: the held copy, and `verify`'s walk
    finds the writer's text in the source."""
    source = _trailing_file(faststart=faststart)
    assert sorted(_placed(source)) == sorted([SEI, SECOND])
    blanked = _trailing_file(blanked=True, faststart=faststart)
    copy = bytearray(source)
    blanks.fill_in(copy, mp4.parse(source)[0])
    assert copy == blanked
    assert OWN in frames.headers(encapsulate([source]), video.H264)  # (a copy made before)
    streamed_as_held(tmp_path, source, blanked, OWN, 20261206)
