"""MP4 (ISO base media) files wrapped whole under the video UIDs: metadata zeroed, SEI blanked.

Box headers are kept. User data and metadata values (titles, comments, places, XMP), UUID boxes
after their UUID, free space, event messages, the creation and modification times of the movie,
its tracks and their media (and a live recording's producer times), and the names and places no
decoder reads (handler names, data reference locations, compressor names: ``_mp4_names``) are
zeroed. The samples of H.264 and HEVC tracks are found by their sample tables, or in a
fragmented file by its movie fragments' track runs, and read as length-prefixed NAL units, for
their user data SEI messages (``video``); those of Motion JPEG tracks (``MP4_JPEG``) as JPEGs,
their text segments blanked (``jpeg``). The samples of a track that is neither video, audio nor
an image sequence (``MP4_MEDIA``: timed text, captions, timed metadata, timecode, hints; a track
naming no handler), or whose pictures no decoder reads (a damaged sample entry: ``_kept``), are
found the same way and zeroed whole; those of other tracks (audio, video of other codecs) are
kept unread (``KEPT``). The media data (``mdat``, and any top-level box of a kind
``MP4_FILE_BOXES`` does not name) that no sample of any track places is zeroed (``_unplaced``):
no decoder reads it, and a meta box's items (HEIF's Exif) or a writer's own data lie there; so
is what follows where the boxes end and no box follows (damage, a writer's trailer), past the
bytes a box's header would take (``HEAD_ROOM``). The box walker (``box_list``) serves JP2 and
JPEG XL files too (``frames``).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from indexer.deid import jpeg, places
from indexer.deid.blanks import (
    NESTING,
    UUID_BYTES,
    ZERO,
    Blank,
    Box,
    Region,
    add,
    fill_in,
    spaces,
)
from indexer.deid.jpeg import JPEG
from indexer.deid.places import KEPT, STEP, ZEROED, Place, Places
from indexer.deid.video import (
    H264,
    HEVC,
    Resume,
    header_bytes,
    picture,
    sei_header,
    sei_user_data,
    sei_user_data_from,
    trimmed,
)

# MP4 (ISO base media) files wrapped whole, which writers put under the video UIDs
MP4_FIRST, MP4_MEDIA_DATA, MP4_HANDLER, MP4_DATA = b"ftyp", b"mdat", b"hdlr", b"data"
MP4_UUID = b"uuid"
MP4_HANDLER_NAME = 24  # a handler box's name, after version, flags, type and reserved bytes
MP4_CONTAINERS = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf"}
)
MP4_TIMES = frozenset({b"mvhd", b"tkhd", b"mdhd"})  # creation and modification times
MP4_TEXT = frozenset({b"udta", b"meta", b"free", b"skip"})  # user data, metadata, free space
# a live recording's fragments: the wall-clock (NTP) time each was made at, after the
# version, flags and track; an event message (DASH: a scheme, a value, its data, as ID3 text)
MP4_PRODUCED, MP4_EVENT = b"prft", b"emsg"
MP4_ZEROED = frozenset({MP4_UUID, MP4_EVENT, MP4_PRODUCED})  # a part of their payload zeroed
MP4_MOVIE, MP4_TRACK, MP4_FRAGMENT = b"moov", b"trak", b"moof"
# the kinds of box a file's top level holds that are no media data: the file's and each
# segment's type, the movie, its fragments and their index, free space, user data and
# metadata, UUID boxes, segment indexes, producer times, event messages, download hints.
# A box of any other kind there (``mdat``; a kind damage renamed, or a writer's own; a
# QuickTime preview's picture) is media data: zeroed but where a sample lies (``_unplaced``)
MP4_FILE_BOXES = frozenset(
    {
        *(b"ftyp", b"styp", b"moov", b"moof", b"mfra", b"free", b"skip", b"wide", b"meta"),
        *(b"udta", b"uuid", b"sidx", b"ssix", b"prft", b"emsg", b"pdin"),
    }
)
# a track fragment header's flags: a base offset, a sample description, a default duration,
# a default size; its data counted from the fragment's start
TFHD_BASE, TFHD_INDEX, TFHD_DURATION, TFHD_SIZE, TFHD_BASE_IS_MOOF = 1, 2, 8, 0x10, 0x20000
# a track run's flags: an offset, the first sample's flags, each sample's fields
TRUN_OFFSET, TRUN_FIRST_FLAGS, TRUN_DURATION, TRUN_SIZE = 1, 4, 0x100, 0x200
TRUN_SAMPLE_FIELDS = 0xF00  # duration, size, flags, composition time offset
MP4_SAMPLES = 1 << 20  # samples of a track looked at: 9.7 hours at 30 a second
RANKS = {KEPT: 1, ZEROED: 2}  # a movie's tracks given room for their samples: video's first
WALK_SAMPLES = 1 << 22  # samples a streamed file's walk looks at, its fragments' all told
AHEAD_BOXES = 1 << 12  # top-level boxes walked ahead for a movie box at a file's end
SEARCH_BEHIND = 64 << 10  # of a box cut by buffers: searched again with the next
UNREAD = 1 << 63  # a streamed file's bytes past where its boxes can be walked
# of the bytes where a file's box walk stops (no box): those a box's header may take, kept
# (a streamed walk's buffer may have ended in them, and gone; and a file's end cut them, so
# that no walk tells they are no box); the rest are media data, zeroed but where a sample lies
HEAD_ROOM = 16
# sample entries of H.264 and HEVC: (codec, decoder configuration, its NAL length's byte)
MP4_VIDEO = {
    **dict.fromkeys((b"avc1", b"avc3"), (H264, b"avcC", 4)),
    **dict.fromkeys((b"hvc1", b"hev1"), (HEVC, b"hvcC", 21)),
}
# sample entries of Motion JPEG: QuickTime's Photo JPEG, Motion JPEG format A, OpenDML's, Avid's
MP4_JPEG = frozenset({b"jpeg", b"mjpa", b"dmb1", b"AVDJ"})
# the handlers of tracks whose samples are pictures or sound: video, auxiliary video (depth,
# alpha), an image sequence (HEIF's), audio. Any other track's samples (timed text,
# subtitles, captions, timed metadata such as a phone's places, timecode, hints; a track
# naming no handler) are zeroed whole.
MP4_MEDIA = frozenset({b"vide", b"auxv", b"pict", b"soun"})
MP4_PICTURES = MP4_MEDIA - {b"soun"}  # the handlers of tracks of visual sample entries
# names and places that no decoder reads, in the movie box: a visual sample entry's
# compressor name (a writer's, a device's: 32 bytes after the entry's fixed fields), a
# data reference's location (a URL, a URN, QuickTime's alias of a file: paths, volumes)
MP4_DESCRIPTIONS, MP4_REFERENCES = b"stsd", b"dref"
COMPRESSOR_NAME, COMPRESSOR_NAME_BYTES = 42, 32
MP4_HANDLER_TYPE = 8  # in a handler box's payload: after version, flags and pre_defined


def is_mp4(head: bytes | bytearray | memoryview) -> bool:
    """Whether video beginning with ``head`` is an MP4 (ISO base media) file: ``ftyp`` first."""
    return bytes(head[4:8]) == MP4_FIRST


def parse(b: bytes | bytearray | memoryview) -> tuple[list[Blank], list[Region]]:
    """An MP4 file's metadata blanked: what its boxes hold but the media data.

    User data and metadata (titles, comments, places, devices; the items' values), UUID
    boxes after their UUID, free space, the creation and modification times of the movie,
    its tracks and their media, and handler names, data references and compressor names
    are zeroed; box headers stay. Of the media data (``mdat``, and any box of a kind not in
    ``MP4_FILE_BOXES``) only the samples of H.264, HEVC and Motion JPEG tracks are read, as
    their sample tables (or movie fragments, ``moof``) place them, for their user data SEI
    messages or JPEG text segments (``_sample_sei``); those of text and metadata tracks are
    zeroed, those of other tracks (audio) kept, and what no sample of any track places
    zeroed (``_unplaced``). Where the walk stops, bytes that are no box follow (damage, a
    writer's trailer): past a header's room (``HEAD_ROOM``, kept) they are media data too.
    Every box but the media data, the SEI messages, the JPEG headers and the zeroed bytes
    are searched by the leak check.
    """
    blanks: list[Blank] = []
    regions: list[Region] = []
    media: tuple[list[Region], list[Places]] = ([], [])
    if (after := _parse(b, blanks, regions, Movie(), media=media)) < len(b):
        # bytes no box holds: the walk stops, and past a header's room they are media data
        media[0].append((after + HEAD_ROOM, len(b)))
    for start, stop in _unplaced(media[0], Places.join(media[1])):
        if start < min(stop, len(b)):  # searched too, as an older copy holds them
            add(blanks, start, stop, ZERO, len(b))
            regions.append((start, min(stop, len(b))))
    return blanks, regions


def _unplaced(media: list[Region], placed: Places) -> Iterator[Region]:
    """The bytes of ``media`` (where media data lies, in the file's order) no sample holds.

    A decoder reads no others: a meta box's items (HEIF's Exif), a writer's own data, the
    samples of a track whose table is lost, or past ``MP4_SAMPLES``.
    """
    covered = placed.nonempty().merged()  # by start, apart
    gap_starts = [0, *covered.stops.tolist()]
    gap_stops = [*covered.starts.tolist(), UNREAD]
    for a, z in media:
        i = bisect.bisect_right(gap_stops, a)  # the first gap that ends past ``a``
        while i < len(gap_starts) and gap_starts[i] < z:
            if max(a, gap_starts[i]) < min(z, gap_stops[i]):
                yield max(a, gap_starts[i]), min(z, gap_stops[i])
            i += 1


@dataclass(slots=True)
class Movie:
    """What a file's movie box says of its video tracks, for the movie fragments after it."""

    tracks: dict[int, tuple[str, int]] = field(default_factory=dict)  # id: codec, length size
    defaults: dict[int, int] = field(default_factory=dict)  # default sample sizes (``trex``)


def _parse(
    b: bytes | bytearray | memoryview,
    blanks: list[Blank],
    regions: list[Region],
    movie: Movie | None,
    *,
    origin: int = 0,
    later: list[Places] | None = None,
    media: tuple[list[Region], list[Places]] | None = None,
) -> int:
    """``parse``'s walk of the boxes ``b`` holds; ``b`` lies at ``origin`` in the file.

    ``movie``: the tracks known so far (None: no sample is read). ``later``: a walk's list
    (``Mp4Walk``): the samples that the boxes ``b`` holds whole place go there, to be read
    as their bytes come; else they are read in ``b``. ``media``: where the payloads of its
    media data boxes (of kinds ``MP4_FILE_BOXES`` does not name) lie, to the ends they
    claim, go to its first list; read in ``b``, the samples placed to its second.
    Returns where the walk stopped: the end the last box claims (0: no box).
    """
    claimed = 0
    for at, kind, head, claimed in box_list(b, 0, len(b)):
        end = min(claimed, len(b))  # a box may claim more than the file (or fragment) holds
        if kind in MP4_FILE_BOXES:
            regions.append((at, end))
            _mp4_box(b, kind, at + head, end, blanks, 0, claimed=_cut(b, claimed))
        elif media is not None:
            media[0].append((origin + at + head, origin + claimed))
        if movie is None:
            continue
        whole = later is None or claimed <= len(b)  # a walk's box cut: its places not yet
        found = _box_samples(b, (at, kind, head, end), movie, blanks, regions, origin, whole=whole)
        if later is not None:
            later.append(found)
            continue
        for start, stop, codec, size in found:
            if codec == ZEROED and start < min(stop, len(b)):  # searched too: an older copy's
                add(blanks, start, stop, ZERO, len(b))
                regions.append((start, min(stop, len(b))))
            elif codec not in (ZEROED, KEPT):
                _sample_sei(b, codec, size, start, min(stop, len(b)), blanks, regions)
        if media is not None:
            media[1].append(found)
    return claimed


def _box_samples(
    b: bytes | bytearray | memoryview,
    box: Box,
    movie: Movie,
    blanks: list[Blank],
    regions: list[Region],
    origin: int,
    *,
    whole: bool,
) -> Places:
    """The samples a movie box's tables, or a movie fragment's runs, place in the file.

    A movie box's tracks are noted in ``movie``, and the units an HEVC configuration
    declares (``b``'s own bytes) are read at once. Not ``whole`` (a box cut): that only.
    The video tracks' samples come first (``MP4_SAMPLES`` are held at once), then those
    kept unread, then the zeroed ones; of the last two, those that touch made one
    (``Places.merged``). Those past the room are zeroed as media data no sample places.
    """
    at, kind, head, end = box
    found: list[Places] = []
    if kind == MP4_MOVIE:
        tracks = sorted(_tracks(b, at + head, end), key=lambda track: RANKS.get(track[1], 0))
        for track, codec, size, declared, table in tracks:
            movie.tracks[track] = (codec, size)
            for start, stop in declared:
                _sample_sei(b, codec, 2, start, min(stop, len(b)), blanks, regions)
            room = MP4_SAMPLES - sum(map(len, found))  # all its tracks': held at once
            if whole and room > 0:  # (a cut box's tables are not worked out, nor dropped)
                found.append(_placed(*table(), codec, size).first(room))
        movie.defaults = _fragment_defaults(b, at + head, end)
    elif kind == MP4_FRAGMENT and whole:
        for track, starts, stops in _fragment_samples(b, at, head, end, movie.defaults, origin):
            if track in movie.tracks:
                found.append(_placed(starts, stops, *movie.tracks[track]))
    return Places.join(found)


def _placed(starts: np.ndarray, stops: np.ndarray, codec: str, size: int) -> Places:
    """A track's samples (``Places.track``); a zeroed or kept track's merged where they touch."""
    found = Places.track(starts, stops, codec, size)
    return found.merged() if codec in RANKS else found


def _fragment_defaults(b: bytes | bytearray | memoryview, start: int, end: int) -> dict[int, int]:
    """Each track's default sample size in movie fragments (``mvex``'s ``trex`` boxes)."""
    extends = _child(b, start, end, b"mvex")
    found: dict[int, int] = {}
    for at, kind, head, stop in box_list(b, *extends) if extends else []:
        fields = _array(b, at + head, min(stop, end), 4, skip=4).tolist()  # after version, flags
        if kind == b"trex" and len(fields) >= 4:  # noqa: PLR2004 - track, index, duration, size
            found[fields[0]] = fields[3]
    return found


def _fragment_samples(
    b: bytes | bytearray | memoryview,
    moof: int,
    head: int,
    end: int,
    defaults: dict[int, int],
    origin: int = 0,
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(track, starts, ends) of each run of samples a movie fragment (``moof`` at) places.

    Each track fragment: its header (``tfhd``: the track, where its data is counted from,
    a default sample size), then its runs (``trun``: an offset, each sample's size).
    Without an offset of its own, a track fragment's data follows the one before (the first
    one's: the fragment's start). At most ``MP4_SAMPLES`` samples. Places are the file's:
    ``b`` lies at ``origin`` in it.
    """
    runs: list[tuple[int, np.ndarray, np.ndarray]] = []
    placed = 0  # samples, all runs' so far
    after = None  # where the last track fragment's data ended (None: this is the first)
    for at, kind, box_head, stop in box_list(b, moof + head, end):
        header = _child(b, at + box_head, min(stop, end), b"tfhd")
        if kind != b"traf" or header is None or header[1] - header[0] < 8:  # noqa: PLR2004
            continue
        flags = int.from_bytes(b[header[0] + 1 : header[0] + 4], "big")
        fields = _array(b, *header, 4, skip=4).tolist()  # the track, then the optional fields
        track = fields[0]
        data = origin + moof if flags & TFHD_BASE_IS_MOOF or after is None else after
        i = 1
        if flags & TFHD_BASE and len(fields) >= 3:  # noqa: PLR2004 - a 64-bit offset
            data, i = fields[1] << 32 | fields[2], 3
        i += bool(flags & TFHD_INDEX) + bool(flags & TFHD_DURATION)
        size = fields[i] if flags & TFHD_SIZE and i < len(fields) else defaults.get(track, 0)
        for run_at, run_kind, run_head, run_stop in box_list(b, at + box_head, min(stop, end)):
            if run_kind == b"trun":
                room = MP4_SAMPLES - placed
                data, found = _run(b, run_at + run_head, min(run_stop, end), data, size, room)
                if found is not None:
                    runs.append((track, *found))
                    placed += len(found[0])
        after = data
    return runs


def _run(
    b: bytes | bytearray | memoryview,
    start: int,
    end: int,
    base: int,
    size: int,
    room: int,
) -> tuple[int, tuple[np.ndarray, np.ndarray] | None]:
    """Where a track run's (``trun``'s payload) data ends; (starts, ends) of its samples.

    ``room`` of them at most (the fragment's runs together place ``MP4_SAMPLES``); None:
    none.
    """
    if end - start < 8:  # noqa: PLR2004 - version, flags, the sample count
        return base, None
    flags = int.from_bytes(b[start + 1 : start + 4], "big")
    count, at = int.from_bytes(b[start + 4 : start + 8], "big"), start + 8
    if flags & TRUN_OFFSET:
        base += int.from_bytes(b[at : at + 4], "big", signed=True)
        at += 4
    at += 4 * bool(flags & TRUN_FIRST_FLAGS)
    each = 4 * (flags & TRUN_SAMPLE_FIELDS).bit_count()  # each sample's fields
    count = min(count, room)
    count = min(count, max(0, (end - at) // each)) if each else count * (at <= end)
    if count <= 0:
        return base, None
    entries = None
    if flags & TRUN_SIZE:  # after its duration, if it has one
        fields = _array(b, at, at + count * each, 4, skip=0, most=count * each // 4)
        entries = fields.reshape(count, each // 4)[:, int(bool(flags & TRUN_DURATION))]
    starts, stops, base = places.run(entries, count, size, base)
    return base, (starts, stops)


def _child(
    b: bytes | bytearray | memoryview, start: int, end: int, *path: bytes
) -> tuple[int, int] | None:
    """(start, end) of the payload of the box at ``path`` below ``start`` to ``end``."""
    for kind in path:
        found = next(
            ((a + h, min(z, end)) for a, k, h, z in box_list(b, start, end) if k == kind), None
        )
        if found is None:
            return None
        start, end = found
    return start, end


def _tracks(
    b: bytes | bytearray | memoryview, start: int, end: int
) -> Iterator[tuple[int, str, int, list[Region], Callable[[], tuple[np.ndarray, np.ndarray]]]]:
    """Each track of the movie that has a sample table: id, codec, length size, units.

    An H.264 or HEVC track: its units' length size, the units its configuration declares
    (each after a 2-byte length). A Motion JPEG track (an image sequence's too): ``JPEG``,
    0, none. A track of no handler in ``MP4_MEDIA``, or of pictures no decoder reads
    (``_kept``): ``ZEROED``, 0, none. Any other (video of other codecs, image sequences,
    audio): ``KEPT``, 0, none. Then the samples its table places (in the file; worked out
    when called for).
    """
    for at, kind, head, stop in box_list(b, start, end):
        if kind != MP4_TRACK:
            continue
        inner = (at + head, min(stop, end))
        table = _child(b, *inner, b"mdia", b"minf", b"stbl")
        if table is None:
            continue
        track = _track_id(b, _child(b, *inner, b"tkhd"))
        samples = functools.partial(_samples, b, *table)
        if (coded := _video_entry(b, table)) is not None:
            codec, size, config = coded
            yield track, codec, size, _declared(b, codec, *config), samples
        else:
            handler = _handler(b, _child(b, *inner, b"mdia", b"hdlr"))
            yield track, KEPT if _kept(b, table, handler) else ZEROED, 0, [], samples


def _kept(b: bytes | bytearray | memoryview, table: Region, handler: bytes) -> bool:
    """Whether a track of ``handler`` (its sample table ``table``) is kept unread.

    Sound is; pictures of a codec their sample entry names (MPEG-4 Visual, AV1, ProRes...)
    are. Pictures whose entry is none, or of a kind no codec has (bytes that are no four
    letters: damage), or an H.264 or HEVC one whose decoder configuration is not whole,
    are not: no decoder reads them, and the text they hold (a Motion JPEG's Exif, an SEI
    message's) was kept unread, and not searched. Nor is a track of no handler in
    ``MP4_MEDIA``.
    """
    if handler not in MP4_PICTURES:
        return handler in MP4_MEDIA
    entry = _first_entry(b, table)
    kind = entry[1] if entry is not None else b""
    return len(kind) == 4 and kind not in MP4_VIDEO and all(0x20 <= c < 0x7F for c in kind)  # noqa: PLR2004


def _first_entry(b: bytes | bytearray | memoryview, table: Region) -> Box | None:
    """The first sample entry of a sample table (``stbl``'s payload), its end within theirs."""
    entries = _child(b, *table, b"stsd")
    if entries is None or entries[1] - entries[0] < 8:  # noqa: PLR2004 - version, count
        return None
    entry = box_list(b, entries[0] + 8, entries[1])[:1]
    return (*entry[0][:3], min(entry[0][3], entries[1])) if entry else None


def _video_entry(
    b: bytes | bytearray | memoryview, table: Region
) -> tuple[str, int, Region] | None:
    """A sample table's (``stbl``'s payload) video entry: codec, length size, config.

    H.264 or HEVC: its units' length size and its decoder configuration; Motion JPEG
    (``MP4_JPEG``): 0, none. None: its first sample entry is none of them, or its decoder
    configuration is not whole.
    """
    entry = _first_entry(b, table)
    if entry is not None and entry[1] in MP4_JPEG:
        return JPEG, 0, (0, 0)
    if entry is None or entry[1] not in MP4_VIDEO:
        return None
    codec, config_kind, at_byte = MP4_VIDEO[entry[1]]
    # a visual sample entry's fixed fields (78 bytes), then its boxes: the decoder config
    config = _child(b, entry[0] + entry[2] + 78, entry[3], config_kind)
    if config is None or config[0] + at_byte >= config[1]:
        return None
    return codec, (b[config[0] + at_byte] & 3) + 1, config  # lengthSizeMinusOne


def _handler(b: bytes | bytearray | memoryview, header: Region | None) -> bytes:
    """The handler type a media's handler box (``hdlr``'s payload) names; empty: none."""
    if header is None or header[1] - header[0] < MP4_HANDLER_TYPE + 4:
        return b""
    return bytes(b[header[0] + MP4_HANDLER_TYPE : header[0] + MP4_HANDLER_TYPE + 4])


def _track_id(b: bytes | bytearray | memoryview, header: Region | None) -> int:
    """The id a track header (``tkhd``'s payload) gives; -1: none (no fragment names it)."""
    if header is None or header[1] - header[0] < 24:  # noqa: PLR2004 - version 1's id
        return -1
    at = header[0] + (20 if b[header[0]] == 1 else 12)  # after 64-bit times, or 32-bit ones
    return int.from_bytes(b[at : at + 4], "big")


def _declared(b: bytes | bytearray | memoryview, codec: str, start: int, end: int) -> list[Region]:
    """Where the NAL units an HEVC decoder configuration declares lie, each from its length.

    An encoder's SEI messages are put there too (x265's settings).
    """
    if codec != HEVC or start + 23 > end:  # the record's fixed part, then its count of arrays
        return []
    places: list[Region] = []
    at = start + 23
    for _ in range(b[start + 22]):  # numOfArrays: (type, count, then each unit with its length)
        if at + 3 > end:
            break
        count, at = int.from_bytes(b[at + 1 : at + 3], "big"), at + 3
        for _ in range(count):
            if at + 2 > end:
                return places
            stop = min(at + 2 + int.from_bytes(b[at : at + 2], "big"), end)
            places.append((at, stop))
            at = stop
    return places


def _samples(
    b: bytes | bytearray | memoryview, start: int, end: int
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of each sample of a track, from its sample table (``stbl``'s payload).

    At most ``MP4_SAMPLES`` of them (a table may claim any count): only the numbers that
    place those are read.
    """
    sizes_box, chunks_box = _child(b, start, end, b"stsz"), _child(b, start, end, b"stsc")
    offsets_box, wide = _child(b, start, end, b"stco"), 4
    if offsets_box is None:
        offsets_box, wide = _child(b, start, end, b"co64"), 8
    if sizes_box is None or chunks_box is None or offsets_box is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # after version and flags: a size for all, the count, then each one's size
    fixed, count = [*_array(b, *sizes_box, 4, skip=4, most=2).tolist(), 0, 0][:2]
    sizes = np.zeros(0, np.int64) if fixed else _array(b, *sizes_box, 4, skip=12, most=MP4_SAMPLES)
    count = min(count, MP4_SAMPLES, MP4_SAMPLES if fixed else len(sizes))
    # (first chunk, samples a chunk, entry) each
    chunks = _array(b, *chunks_box, 4, skip=8, most=3 * MP4_SAMPLES)
    offsets = _array(b, *offsets_box, wide, skip=8, most=MP4_SAMPLES)
    return places.table(sizes, fixed, count, chunks, offsets)


def _array(
    b: bytes | bytearray | memoryview,
    start: int,
    end: int,
    wide: int,
    *,
    skip: int,
    most: int = MP4_SAMPLES,
) -> np.ndarray:
    """The big-endian numbers of ``wide`` (4 or 8) bytes from ``start`` + ``skip`` to ``end``.

    The first ``most`` of them (a table may claim millions: a list of those took
    gigabytes), in an array of their own (``b`` may grow after; ``tolist``: a box's fields).
    """
    count = min(most, (end - start - skip) // wide)
    if count <= 0:
        return np.zeros(0, np.int64)
    return np.frombuffer(b, f">u{wide}", count, start + skip).copy()


def _sample_sei(
    b: bytes | bytearray | memoryview,
    codec: str,
    size: int,
    start: int,
    end: int,
    blanks: list[Blank],
    regions: list[Region],
) -> None:
    """A sample's NAL units (each after its length): user data SEI blanked, SEI searched.

    As is every unit that is no coded picture data (``video.picture``), and one whose length
    runs past the sample's end (damage: a misread length, a sample misplaced). A Motion JPEG
    sample (``JPEG``): its segments' text blanked, its header searched.
    """
    if codec == JPEG:
        segments, walked = jpeg.parse(b, start, end)
        blanks += segments
        regions += walked
        return
    at = start
    while at + size < end:
        claimed = at + size + int.from_bytes(b[at : at + size], "big")
        stop = min(claimed, end)
        first = at + size
        if header := sei_header(codec, b[first]):
            blanks += spaces(b, sei_user_data(b, first + header, stop, codec))
        second = b[first + 1] if first + 1 < stop else 1
        if header or not picture(codec, b[first], second) or claimed > end:
            regions.append((first, stop))
        at = stop


def _cut(b: bytes | bytearray | memoryview, claimed: int) -> int | None:
    """``claimed`` (a box's end) where it lies past ``b``'s end, else None."""
    return claimed if claimed > len(b) else None


def _mp4_box(
    b: bytes | bytearray | memoryview,
    kind: bytes,
    start: int,
    end: int,
    blanks: list[Blank],
    depth: int,
    *,
    claimed: int | None = None,
    visual: bool = False,
) -> None:
    """Blank what the box ``kind`` holds from ``start`` to ``end`` (its payload).

    ``claimed``: where the box claims to end, if ``b`` ends inside it (``_boxes_whole``).
    ``visual``: the box lies in a track of pictures (``MP4_PICTURES``).
    """
    if kind in MP4_CONTAINERS and depth < NESTING:
        if kind == MP4_TRACK:
            visual = _handler(b, _child(b, start, end, b"mdia", b"hdlr")) in MP4_PICTURES
        for at, inner, head, stop in box_list(b, start, end):
            _mp4_box(
                b,
                inner,
                at + head,
                min(stop, end),
                blanks,
                depth + 1,
                claimed=_cut(b, stop),
                visual=visual,
            )
    elif kind in (MP4_HANDLER, MP4_DESCRIPTIONS, MP4_REFERENCES):
        _mp4_names(b, kind, start, end, blanks, visual=visual)
    elif kind in MP4_TIMES and start < end:
        times = 16 if b[start] == 1 else 8  # version 1: two 64-bit times, else 32-bit ones
        add(blanks, start + 4, start + 4 + times, ZERO, end)
    elif kind in MP4_ZEROED:
        add(blanks, *_zeroed(kind, start, end), ZERO, end)
    elif kind in MP4_TEXT:
        _mp4_text(b, start, end, blanks, depth, claimed=claimed)


def _mp4_names(
    b: bytes | bytearray | memoryview,
    kind: bytes,
    start: int,
    end: int,
    blanks: list[Blank],
    *,
    visual: bool,
) -> None:
    """Zero the names and places no decoder reads in a ``kind`` box's payload.

    A handler's name (a media's, a data handler's), each data reference's location (after
    its version and flags), each compressor name of a track of pictures' sample entries
    (``visual``). A metadata box's handler is ``_mp4_text``'s.
    """
    if kind == MP4_HANDLER:
        add(blanks, start + MP4_HANDLER_NAME, end, ZERO, end)
        return
    if kind == MP4_DESCRIPTIONS and not visual:
        return
    for at, _entry, head, stop in box_list(b, start + 8, end):  # after version, flags, count
        if kind == MP4_REFERENCES:
            add(blanks, at + head + 4, stop, ZERO, min(stop, end))
        elif at + head + COMPRESSOR_NAME + COMPRESSOR_NAME_BYTES <= min(stop, end):
            name = at + head + COMPRESSOR_NAME
            add(blanks, name, name + COMPRESSOR_NAME_BYTES, ZERO, end)


def _zeroed(kind: bytes, start: int, end: int) -> tuple[int, int]:
    """The bytes zeroed of a ``kind`` box (``MP4_ZEROED``), its payload ``start`` to ``end``.

    A UUID box's after its UUID, an event message's after its version and flags, a producer
    time's wall-clock time.
    """
    if kind == MP4_PRODUCED:
        return start + 8, start + 16  # after its version, flags and track
    return start + (UUID_BYTES if kind == MP4_UUID else 4), end


def _mp4_text(
    b: bytes | bytearray | memoryview,
    start: int,
    end: int,
    blanks: list[Blank],
    depth: int,
    *,
    claimed: int | None = None,
) -> None:
    """Zero the values under user data or metadata, its boxes' headers and handler kept.

    A payload that is boxes (a metadata box's, after its version in ISO files; an item
    list's; an item's) is walked into; any other is zeroed: a text, a place, a value.
    """
    for skip in (4, 0):  # ISO's metadata box has a version and flags first; QuickTime's not
        boxes = _boxes_whole(b, start + skip, end, claimed=claimed) if depth < NESTING else None
        if boxes is not None and end - start > skip:
            for at, kind, head, box_end in boxes:
                stop = min(box_end, end)
                if kind == MP4_HANDLER:
                    add(blanks, at + head + MP4_HANDLER_NAME, stop, ZERO, stop)
                elif kind == MP4_DATA:
                    add(blanks, at + head + 8, stop, ZERO, stop)  # after its type and locale
                else:
                    _mp4_text(b, at + head, stop, blanks, depth + 1, claimed=_cut(b, box_end))
            return
    add(blanks, start, end, ZERO, end)


def box_list(
    b: bytes | bytearray | memoryview, start: int, end: int, *, to_end: bool = True
) -> list[Box]:
    """(start, kind, header length, end) of the ISO boxes (JP2, JPEG XL, MP4) from ``start``.

    An end is as the box's size says: past ``end`` where that runs on. A size of 0 is a box
    to the end (``to_end``), or no box.
    """
    found: list[Box] = []
    i = start
    while i + 8 <= end:
        size, head = box_size(bytes(b[i : min(i + 16, end)]), end - i if to_end else 0)
        if size is None or size < head:
            break
        found.append((i, bytes(b[i + 4 : i + 8]), head, i + size))
        i += size
    return found


def _boxes_whole(
    b: bytes | bytearray | memoryview, start: int, end: int, *, claimed: int | None = None
) -> list[Box] | None:
    """The boxes from ``start`` to ``end`` if those bytes are boxes end to end, else None.

    ``claimed``: ``b`` ends at ``end`` inside the box, which claims to run to ``claimed`` (a
    streamed file's fragment cuts it). Then the last box may run on past ``end``, or its
    header be cut: its size, or the smallest one its first bytes may begin, must fit
    (a value's bytes seldom do).
    """
    boxes = box_list(b, start, end, to_end=False)  # (in a box: a value's zeros, rather)
    last = boxes[-1][3] if boxes else start
    if boxes and last == end:
        return boxes
    if claimed is None or last > claimed:
        return None
    if last > end:  # the last box runs on into the next fragment
        return boxes
    tail = bytes(b[last:end])
    if len(tail) >= 4:  # noqa: PLR2004 - a size: it must fit (or be a 64-bit one)
        size = int.from_bytes(tail[:4], "big")
        fits = size == 1 or 8 <= size <= claimed - last  # noqa: PLR2004 - a header's bytes
        return boxes if len(tail) < 8 and fits else None  # noqa: PLR2004
    smallest = int.from_bytes(tail, "big") << 8 * (4 - len(tail))  # the size it may begin
    return boxes if smallest <= claimed - last else None


def samples_ahead(read: Callable[[int, int], bytes], first: int, held: int) -> Places:
    """The samples placed by a movie box after the media data, read ahead of the stream.

    Where the box runs past a streamed file's first fragment (``first`` bytes), its
    samples' bytes come before it: a file whose movie box is at its end, as ffmpeg and
    phones write it. ``read(at, n)``: the file's bytes. Its top-level boxes are walked by
    their headers (``AHEAD_BOXES`` of them at most), and such a movie box, up to ``held``
    bytes, is read. None for a movie box before the media data (read as it comes, before
    the samples), or whole in the first fragment (read with it), or none found.
    """
    at, media = 0, False
    for _ in range(AHEAD_BOXES):
        head = read(at, 16)
        size, header = box_size(head)
        if size is None or size < header:
            break
        media = media or head[4:8] == MP4_MEDIA_DATA
        if head[4:8] == MP4_MOVIE:
            if not media or at + size <= first:
                break
            if size > held:  # walked into, as the stream's walk does
                return Mp4Walk.ahead(read, (at, size), held)
            later: list[Places] = []
            _parse(read(at, size), [], [], Movie(), origin=at, later=later)
            return Places.join(later)
        at += size
    return Places.none()


FAKE = b"\xff\xff\xff\xff"  # the size of an opened box's header put before a box it holds
# the boxes an opened box keeps of those it holds (``Mp4Walk._keep``): what places samples
SKELETON = (MP4_CONTAINERS - {b"edts", b"dinf"}) | {
    *(b"tkhd", b"stsd", b"stsz", b"stsc", b"stco", b"co64", b"trex", b"tfhd", b"trun")
}
SKELETON_BYTES = 32 << 20  # of those held whole: sample tables of ``MP4_SAMPLES`` take 12 MB


@dataclass(slots=True)
class _Open:
    """A box too large to hold whose boxes a walk walks (``Mp4Walk``), where in the file."""

    start: int
    kind: bytes
    end: int
    parts: list[bytes] = field(default_factory=list)  # the boxes kept (``SKELETON``), held


class Mp4Walk:
    """An MP4 file fed a buffer at a time (a streamed object's fragments), blanked in place.

    The first buffer is parsed as a file. After it, the file's top-level boxes are walked:
    the media data is passed over, and every other box (a movie box at the file's end, a
    movie fragment) is held as it comes, up to ``held`` bytes, and parsed again with each
    buffer, its blanks written where they lie in that buffer. A box larger than that which
    holds boxes (a movie box or fragment of a recording of many hours, a track, its tables)
    is opened: the boxes it holds are walked the same way, each held parsed as it would be
    in it (after its containers' headers, ``FAKE``), and those that place samples kept
    (``SKELETON``), to place them when it ends (``_close``). Any other box larger than that
    is passed over unparsed (``_pass``): user data, metadata and free space zeroed whole, a
    UUID box, an event message and a producer time as parsed; the others left; each
    searched as it stays. What went with an earlier buffer was blanked as far as it went; a
    box is searched as it went, each buffer's part with the ``SEARCH_BEHIND`` bytes before
    it (a value a buffer's end cuts). The samples that a movie box's tables or a movie
    fragment's runs place are read as their bytes come (``_Samples``), and the media data
    no sample placed by then holds is zeroed; those of a movie box at the file's end, where
    it was read ahead (``ahead``), too; else those went before their box came, and are
    zeroed. A buffer over ``held`` bytes is read ``held`` bytes at a time (``pieces``).
    """

    def __init__(self, held: int, *, blank: bool = True, ahead: Places | None = None) -> None:
        """``blank``: change the buffers; else find the boxes' bytes only (``verify``).

        ``ahead``: the samples a movie box at the file's end places (``samples_ahead``).
        """
        self._held, self._blank = held, blank
        self._first = True
        self._kept = bytearray()  # the box the last buffer ended in: its bytes so far
        self._skip = 0  # bytes of the next buffer that are media data (or past what is held)
        self._pos = 0  # where the next buffer lies in the file
        self._movie = Movie()
        self._passing: Box = (0, MP4_MEDIA_DATA, 0, 0)  # the box last passed over, in the file
        self._behind = b""  # its last ``SEARCH_BEHIND`` bytes passed, searched with the next
        self._samples = _Samples(blank=blank)
        self._samples.expect(ahead or Places.none())
        self._open: list[_Open] = []  # the boxes too large to hold that the walk is in
        self._chain = 0  # of ``_kept``: the headers of those, before the box's own bytes
        self._skeleton = 0  # bytes they keep (``_keep``)
        self._ahead: list[Places] | None = None  # (``ahead``: the places found, not read)

    @classmethod
    def ahead(cls, read: Callable[[int, int], bytes], box: tuple[int, int], held: int) -> Places:
        """The samples placed by the movie box ``box`` (where, how long) too large to hold.

        Read ``held`` bytes at a time by ``read(at, n)`` and walked into (``samples_ahead``).
        """
        walk = cls(held, blank=False)
        walk._first, walk._pos, walk._ahead = False, box[0], []
        for at in range(box[0], box[0] + box[1], held):
            want = min(held, box[0] + box[1] - at)
            part = bytearray(read(at, want))
            walk._boxes(part)
            walk._pos += len(part)
            if len(part) < want:  # the file ends (a box may claim more)
                break
        return Places.join(walk._ahead)

    def feed(self, buf: bytearray | memoryview) -> list[bytes]:
        """Blank ``buf`` in place; the bytes of its boxes and SEI units to search."""
        return [part for found in self.pieces(buf) for part in found]

    def pieces(self, buf: bytearray | memoryview) -> Iterator[list[bytes]]:
        """``feed``'s bytes to search, a part at a time, each searched alone as it comes.

        A buffer over ``held`` bytes (a fragment mapped from disk) is read ``held`` bytes
        at a time, as buffers are, so that nothing in it is copied whole: an SEI unit, a box
        passed over. The first buffer is parsed whole, as a file (but for a box too large to
        hold that it ends in, which is walked into), and its boxes' bytes to search come
        ``held`` at a time, each with the ``SEARCH_BEHIND`` before it.
        """
        if not self._first:
            yield from self._windows(buf, boxes=True)
            return
        self._first = False
        regions, opened = self._first_buffer(buf)
        for a, z in regions:
            for at in range(a, z, self._held):
                yield [bytes(buf[max(a, at - SEARCH_BEHIND) : min(z, at + self._held)])]
        with memoryview(buf) as view, view[:opened] as parsed, view[opened:] as rest:
            yield from self._windows(parsed, boxes=False)
            yield from self._windows(rest, boxes=True)  # (a box opened)

    def _windows(self, buf: bytearray | memoryview, *, boxes: bool) -> Iterator[list[bytes]]:
        """Walk ``buf``'s boxes (``boxes``) and read its samples, ``held`` bytes at a time."""
        with memoryview(buf) as view:
            for at in range(0, len(view), self._held):
                with view[at : at + self._held] as window:
                    if boxes:
                        yield self._boxes(window)
                    yield self._samples.feed(window, self._pos)
                    self._pos += len(window)

    def _boxes(self, buf: bytearray | memoryview) -> list[bytes]:
        """Walk the boxes in ``buf``, parsing each but the media data, opening large ones."""
        found: list[bytes] = []
        skip = min(self._skip, len(buf))
        self._skip -= skip
        self._pass(buf, 0, skip, found)
        i: int | None = skip
        while i is not None and i < len(buf):
            have = len(self._kept) - self._chain  # the box's own bytes held so far
            if not have and self._open and self._pos + i >= self._open[-1].end:
                self._close()  # the box it lay in ends
                continue
            if not have:  # a box begins: the headers of those it lies in put before it
                self._kept = bytearray(b"".join(FAKE + box.kind for box in self._open))
                self._chain = len(self._kept)
            i = self._next(buf, i, have, found)
        while self._open and len(self._kept) <= self._chain:
            if self._pos + len(buf) < self._open[-1].end:
                break
            self._close()  # (ending with the buffer)
        return found

    def _next(
        self, buf: bytearray | memoryview, i: int, have: int, found: list[bytes]
    ) -> int | None:
        """Go on with the box at ``i`` (``have`` of its bytes held): where the next begins.

        None: the walk stops here (a header cut, held; bytes that are no box).
        """
        head = bytes(self._kept[self._chain : self._chain + 16]) + bytes(buf[i : i + 16])
        size, header = box_size(head)
        start = self._pos + i - have  # (its header's first bytes went)
        room = self._open[-1].end - start if self._open else UNREAD  # in the box it lies in
        if size is None and len(head) < room:  # too few bytes to tell: the header goes on
            self._kept += buf[i:]
            return None
        kind, size = head[4:8], min(UNREAD if size is None else size, room)
        if size < header and not self._open:  # no box: the walk stops, as ``parse``'s does
            self._kept, self._skip = bytearray(), UNREAD
            self._samples.media(start + HEAD_ROOM, UNREAD)  # (``HEAD_ROOM``)
            return None
        if size < header:  # no box: the rest of the one it lies in is passed over
            kind, header, size = b"", 0, room
        stop = i + size - have  # where the box ends in this buffer
        media = not self._open and kind not in MP4_FILE_BOXES  # (its samples read, the rest zeroed)
        if kind in MP4_CONTAINERS and size > self._held and len(self._open) < NESTING and not media:
            self._open.append(_Open(start, kind, start + size))  # its boxes walked
            self._kept, self._chain = bytearray(), 0
            return i + header - have
        if not header or media or kind == MP4_MEDIA_DATA or size > self._held:  # passed, unparsed
            if media:
                self._samples.media(start + header, start + size)
                kind = MP4_MEDIA_DATA
            self._passing, self._behind = (start, kind, header, start + size), b""
            self._kept, self._chain = bytearray(), 0
            self._skip = max(0, stop - len(buf))
            self._pass(buf, i, min(stop, len(buf)), found)
            return min(stop, len(buf))
        found.append(self._box(buf, i, min(stop, len(buf)), whole=stop <= len(buf)))
        if stop <= len(buf):
            self._kept, self._chain = bytearray(), 0
        return min(stop, len(buf))

    def _close(self) -> None:
        """The box last opened ends: what it keeps, kept in the one it lies in.

        Or, a movie box or fragment, the samples its tables or runs place are read as they
        come, and its tracks noted.
        """
        box = self._open.pop()
        self._kept, self._chain = bytearray(), 0
        held = b"".join(box.parts)
        skeleton = (len(held) + 8).to_bytes(4, "big") + box.kind + held
        if self._open:
            self._keep(box.kind, skeleton, opened=True)
            return
        self._skeleton = 0
        found = _box_samples(
            skeleton, (0, box.kind, 8, len(skeleton)), self._movie, [], [], box.start, whole=True
        )
        self._expect([found])

    def _keep(self, kind: bytes, box: bytes, *, opened: bool = False) -> None:
        """Keep ``box`` (held whole, or ``opened``) in the box last opened: one that places.

        Those in ``SKELETON``, ``SKELETON_BYTES`` of those held whole all told.
        """
        if kind not in SKELETON or self._skeleton + (not opened) * len(box) > SKELETON_BYTES:
            return
        self._open[-1].parts.append(box)
        self._skeleton += (not opened) * len(box)

    def _expect(self, found: list[Places]) -> None:
        if self._ahead is not None:
            self._ahead += found
        else:
            self._samples.expect(Places.join(found))

    def _pass(self, buf: bytearray | memoryview, a: int, z: int, found: list[bytes]) -> None:
        """Zero what is zeroed of the box passed over, in ``buf`` from ``a`` to ``z``.

        Of user data, metadata and free space, the payload is zeroed whole (the headers of
        the boxes it holds too); of the others in ``MP4_ZEROED``, their part. What stays of
        its payload there is added to ``found``, after the last bytes of it that went before
        (media data's is not: it is no header).
        """
        start, kind, header, end = self._passing
        a, z = max(a, start + header - self._pos), min(z, end - self._pos)
        if kind == MP4_MEDIA_DATA or a >= z:
            return
        if self._blank and (kind in MP4_TEXT or kind in MP4_ZEROED):
            lo, hi = (
                (start + header, end) if kind in MP4_TEXT else _zeroed(kind, start + header, end)
            )
            lo, hi = max(a, lo - self._pos), min(z, hi - self._pos)
            if hi > lo:
                buf[lo:hi] = bytes(hi - lo)
            if kind in MP4_TEXT:  # zeros: nothing to search
                return
        part = bytes(buf[a:z])
        found.append(self._behind + part)
        self._behind = (self._behind + part)[-SEARCH_BEHIND:]

    def _box(self, buf: bytearray | memoryview, i: int, stop: int, *, whole: bool) -> bytes:
        """Parse the box held so far and ``buf`` to ``stop``; blank its part of ``buf``.

        The box's bytes to search: those in ``buf``, after the last ``SEARCH_BEHIND`` of
        those that went (searched with them), so that a value a buffer's end cuts is found.
        The samples it places, once ``whole``, are read as they come. The box's bytes are
        held as they went, each buffer's added on, not copied again.
        """
        went = len(self._kept)
        self._kept += buf[i:stop]
        box = self._kept
        blanks: list[Blank] = []
        regions: list[Region] = []
        later: list[Places] = []
        movie = Movie() if self._open else self._movie  # (in an opened box: places when it ends)
        _parse(box, blanks, regions, movie, origin=self._pos + i - went, later=later)
        for a, z, fill in blanks if self._blank else ():
            a, z = max(a, went), min(z, len(box))  # noqa: PLW2901 - what went before went as it was
            if z > a:
                box[a:z] = fill * (z - a)
                at = i + a - went
                buf[at : at + z - a] = fill * (z - a)
        if whole and self._open:
            self._keep(bytes(box[self._chain + 4 : self._chain + 8]), bytes(box[self._chain :]))
        elif whole:
            self._expect(later)
        since = max(self._chain, went - SEARCH_BEHIND)
        return b"".join(bytes(box[max(a, since) : z]) for a, z in regions if z > since)

    def _first_buffer(self, buf: bytearray | memoryview) -> tuple[list[Region], int]:
        """Parse the first buffer as a file; keep the box it ends in (or pass over its rest).

        Where its boxes lie, to be searched; where the walk of its boxes goes on (``_boxes``):
        from the start of a box it ends in that is opened, not parsed here; else its end.
        """
        boxes = box_list(buf, 0, len(buf))
        after = boxes[-1][3] if boxes else 0
        to_end = bool(boxes) and int.from_bytes(buf[boxes[-1][0] : boxes[-1][0] + 4], "big") == 0
        opened = (
            boxes[-1][0]
            if boxes
            and after > len(buf)
            and not to_end
            and boxes[-1][1] in MP4_CONTAINERS
            and boxes[-1][1] in MP4_FILE_BOXES
            and after - boxes[-1][0] > self._held
            else len(buf)
        )
        blanks: list[Blank] = []
        regions: list[Region] = []
        later: list[Places] = []
        media: tuple[list[Region], list[Places]] = ([], [])
        with memoryview(buf) as view, view[:opened] as parsed:
            _parse(parsed, blanks, regions, self._movie, later=later, media=media)
        fill_in(buf, blanks if self._blank else [])
        self._expect(later)
        last = boxes[-1] if boxes and (after > len(buf) or to_end) else None
        for start, stop in media[0]:  # (a box to the file's end runs past this buffer's)
            cut = last is not None and to_end and start == last[0] + last[2]
            self._samples.media(start, UNREAD if cut else stop)
        if opened < len(buf):
            return regions, opened
        if last is not None:
            start, kind, header = last[:3]
            if kind not in MP4_FILE_BOXES:
                kind = MP4_MEDIA_DATA  # (its samples read, the rest zeroed: not searched)
            if kind == MP4_MEDIA_DATA or after - start > self._held or after <= len(buf):
                self._skip = UNREAD if after <= len(buf) else after - len(buf)
                # its rest passed over (its part here was parsed above)
                self._passing = (start, kind, header, UNREAD if to_end else after)
            else:
                self._kept = bytearray(buf[start:])
        elif len(buf) - after < HEAD_ROOM:  # a header cut, or nothing
            self._kept = bytearray(buf[after:])
        else:  # bytes no box holds: the walk stops, as ``parse``'s does (``HEAD_ROOM``)
            self._skip = UNREAD
            self._samples.media(after + HEAD_ROOM, UNREAD)
        return regions, len(buf)


class _Samples:
    """The samples a streamed file's boxes place, read as their bytes come.

    A zeroed track's are zeroed (``_zero``). A video sample's NAL units are walked by their
    lengths; a user data SEI unit is blanked, and any unit but a picture's data searched, as in
    ``_sample_sei``. A Motion JPEG sample's segments are walked as they come
    (``jpeg.Segments``). A unit searched (or a length) that a buffer's end cuts is held, from
    its length on, as a read on needs it (``video.trimmed``: its length and header, then its
    bytes from where its read left, or its last ``SEARCH_BEHIND``), and read on with the next
    buffer, whose part of it is blanked there; the part that went was blanked as far as it went.
    A sample placed where bytes already went is not read. The bytes of the media data
    (``media``) that no sample begun holds are zeroed as they come (``_unplaced``), as ``parse``
    zeroes them held.
    """

    def __init__(self, *, blank: bool) -> None:
        self._blank = blank
        self._pending = Places.none()  # by where they begin
        self._next = 0  # the first of them not begun
        self._coming: list[Place] = []  # it and those after it, ``STEP`` at most, as tuples
        self._coming_at = 0  # where the first of those lies in ``_pending``
        self._added = 0
        self._went = 0  # where the bytes not yet read begin (those before went)
        self._current: Place | None = None  # the sample being read
        self._at = 0  # where its next unit (its length) begins
        self._carry = b""  # that unit's bytes that went with earlier buffers, if any
        self._segments: jpeg.Segments | None = None  # a Motion JPEG sample's walk
        # the SEI unit last read (where it begins): where its read goes on
        self._resume: tuple[int, Resume | None] = (-1, None)
        self._media: list[Region] = []  # where media data lies (those not over yet)
        self._reach = 0  # where the samples begun end, the furthest
        self._done = 0  # media data's bytes before it: zeroed, or in a sample begun
        self._gap = b""  # (``verify``) the last bytes of those zeroed, if the buffer's end

    def media(self, start: int, stop: int) -> None:
        """Media data lies from ``start`` to ``stop``: what no sample places there is zeroed."""
        self._media.append((start, stop))

    def expect(self, found: Places) -> None:
        """Read the samples ``found`` as their bytes come (those that went already: not).

        At most ``MP4_SAMPLES`` wait at a time, and ``WALK_SAMPLES`` are taken in all, each
        once: a movie box at the file's end, read ahead, places again as it comes those
        still to come.
        """
        waiting = len(self._pending) - self._next
        room = min(WALK_SAMPLES - self._added, MP4_SAMPLES - waiting)
        new = found.nonempty().since(self._went).first(room)
        if len(new):
            joined = Places.join([self._pending.after(self._next), new]).ordered().distinct()
            self._added += len(joined) - waiting
            self._pending, self._next, self._coming = joined, 0, []

    def feed(self, buf: bytearray | memoryview, pos: int) -> list[bytes]:
        """Read the samples in ``buf`` (at ``pos`` in the file); their SEI units to search."""
        found: list[bytes] = []
        end = pos + len(buf)
        while True:
            if self._current is None:
                coming = self._coming_one()
                if coming is None or coming[0] >= end:
                    break
                if coming[0] < pos:  # it went before it could be begun (samples overlap)
                    skipped = int(np.searchsorted(self._pending.starts, pos))  # those too
                    stops = self._pending.stops[self._next : skipped]
                    self._reach = max(self._reach, int(stops.max()))  # (they cover bytes)
                    self._next = skipped
                    continue
                self._unplaced(buf, pos, coming[0], found)
                self._reach = max(self._reach, coming[1])
                self._current = coming
                self._next += 1
                self._at, self._carry, self._segments = self._current[0], b"", None
            if not self._units(buf, pos, found):
                break
            self._current = None
        self._unplaced(buf, pos, end, found)
        self._went = end
        return found

    def _unplaced(self, buf: bytearray | memoryview, pos: int, to: int, found: list[bytes]) -> None:
        """Zero the media data in ``buf`` (at ``pos``) before ``to`` that no sample begun holds.

        Found only (``verify``): those bytes are searched, after the last ``SEARCH_BEHIND``
        of those that went with the buffer before.
        """
        lo, self._done = max(self._done, self._reach, pos), max(self._done, to)
        while self._media and self._media[0][1] <= pos:
            self._media.pop(0)  # over
        for start, stop in self._media:
            a, z = max(lo, start), min(to, stop)
            if start >= to:
                break
            if z <= a:
                continue
            if self._blank:
                buf[a - pos : z - pos] = bytes(z - a)
                continue
            part = (self._gap if a == pos else b"") + bytes(buf[a - pos : z - pos])
            found.append(part)
            self._gap = part[-SEARCH_BEHIND:] if z == pos + len(buf) else b""

    def _coming_one(self) -> Place | None:
        """The first sample not begun, if any."""
        i = self._next - self._coming_at
        if not 0 <= i < len(self._coming):
            self._coming = list(self._pending.after(self._next).first(STEP))
            self._coming_at, i = self._next, 0
        return self._coming[i] if i < len(self._coming) else None

    def _units(self, buf: bytearray | memoryview, pos: int, found: list[bytes]) -> bool:
        """Walk the current sample's units in ``buf``; whether the sample is over."""
        assert self._current is not None  # noqa: S101 - feed's invariant
        _start, stop, codec, size = self._current
        end = pos + len(buf)
        if codec == ZEROED:
            return self._zero(buf, pos, stop, found)
        if codec == KEPT:
            return stop <= end
        if codec == JPEG:
            return self._jpeg(buf, pos, stop, found)
        while self._at + size < stop:  # a length, and a byte of the unit, at least
            if self._at >= end:
                return False
            k = self._at - pos  # where the unit begins in ``buf`` (below 0: it went, carried)
            head = (self._carry[: size + 2] + bytes(buf[max(k, 0) : max(k, 0) + size + 2]))[
                : size + 2
            ]
            claimed = self._at + size + int.from_bytes(head[:size], "big")
            unit_stop = min(claimed, stop)  # (one claimed past the sample: damage, searched)
            whole = size + header_bytes(codec)  # its length and header, or its end
            if len(head) < min(whole, unit_stop - self._at):  # the buffer ends in them: held
                self._carry += bytes(buf[max(k, 0) :])
                return False
            header = sei_header(codec, head[size])
            second = head[size + 1] if len(head) > size + 1 < unit_stop - self._at else 1
            if header or not picture(codec, head[size], second) or claimed > stop:
                self._searched(buf, k, min(unit_stop, end) - pos, size, header, found)
                if unit_stop > end:  # carried into the next buffer
                    return False
            self._at, self._carry = unit_stop, b""
        return True

    def _zero(self, buf: bytearray | memoryview, pos: int, stop: int, found: list[bytes]) -> bool:
        """Zero the current sample (a zeroed track's) in ``buf``; whether it is over.

        Found only (``verify``): its bytes are searched, after the last ``SEARCH_BEHIND``
        of those that went.
        """
        a, z = max(self._at, pos), min(stop, pos + len(buf))
        if z > a and self._blank:
            buf[a - pos : z - pos] = bytes(z - a)
        elif z > a:
            part = self._carry + bytes(buf[a - pos : z - pos])
            found.append(part)
            self._carry = part[-SEARCH_BEHIND:]
        return stop <= pos + len(buf)

    def _jpeg(self, buf: bytearray | memoryview, pos: int, stop: int, found: list[bytes]) -> bool:
        """Walk the current sample's (a Motion JPEG's) segments in ``buf``; whether it is over.

        Its headers' bytes in ``buf`` are searched, a header that goes on from the last
        buffer's after the last ``SEARCH_BEHIND`` of those that went.
        """
        assert self._current is not None  # noqa: S101 - feed's invariant
        if self._segments is None:
            self._segments = jpeg.Segments(self._current[0], stop)
        blanks, regions = self._segments.feed(buf, pos)
        for a, z, fill in blanks if self._blank else ():
            buf[a - pos : z - pos] = fill * (z - a)
        for a, z in regions:  # (a header between scans is searched alone)
            part = (self._carry if a == pos else b"") + bytes(buf[a - pos : z - pos])
            found.append(part)
            self._carry = part[-SEARCH_BEHIND:] if z == pos + len(buf) else b""
        return self._segments.over or stop <= pos + len(buf)

    def _searched(
        self,
        buf: bytearray | memoryview,
        k: int,
        stop: int,
        size: int,
        sei: int,
        found: list[bytes],
    ) -> None:
        """Search the unit whose length begins at ``k`` in ``buf``, to ``stop``; blank an SEI one.

        ``size``: its length's bytes; ``sei``: its header's, if an SEI unit (0: another,
        only searched). A unit the buffer's end cuts is carried into the next as a read on
        needs it, however long.
        """
        assert self._current is not None  # noqa: S101 - feed's invariant
        codec = self._current[2]
        first = size + (sei or header_bytes(codec))  # where its payload begins
        unit = bytearray(self._carry + bytes(buf[max(k, 0) : stop]))
        went = len(self._carry)
        regions: list[Region] = []
        again: Resume | None = None
        if sei:
            resume = self._resume[1] if went and self._resume[0] == self._at else None
            regions, again = sei_user_data_from(unit, first, len(unit), codec, resume)
        into = max(k, 0) - went  # from a byte of ``unit`` past ``went``: to the same in ``buf``
        for a, z, fill in spaces(unit, regions):
            a = max(a, went)  # noqa: PLW2901 - what went before went as it was
            if z > a and self._blank:
                unit[a:z] = fill * (z - a)
                buf[a + into : z + into] = fill * (z - a)
        # from the unit's header, as held; of a carried unit, what went was searched with
        # it: its last ``SEARCH_BEHIND`` bytes again (a value the buffer's end cuts)
        found.append(bytes(unit[max(self._current[3], went - SEARCH_BEHIND) :]))
        carry, moved = trimmed(bytes(unit), first, again, SEARCH_BEHIND)
        self._resume = (self._at, moved)  # a carried unit is read on from there
        self._carry = carry


def box_size(head: bytes, to_end: int = 1 << 63) -> tuple[int | None, int]:
    """A box's size and its header's length, from its first bytes; None: too few of them.

    A size of 0 (to the end of what holds it) reads as ``to_end``: the largest, unless
    given.
    """
    if len(head) < 8:  # noqa: PLR2004 - size, kind
        return None, 8
    size = int.from_bytes(head[:4], "big")
    if size == 1:
        if len(head) < 16:  # noqa: PLR2004 - a 64-bit size after the kind
            return None, 16
        return int.from_bytes(head[8:16], "big"), 16
    return (to_end if size == 0 else size), 8
