"""Where an MP4 file's samples lie, held as arrays (``places``): the same places the loops
over Python numbers found, in a tenth of the memory."""

from __future__ import annotations

import random
import struct
import tracemalloc

import numpy as np
import pytest

from indexer.deid import blanks, mp4, places, video
from indexer.deid.places import Place, Places
from tests.deid.test_frames import (
    MARK,
    SLICE,
    TEXT,
    UUID,
    _box,
    _escaped,
    _full,
    _nal,
    _rbsp,
    _tracked_mp4,
)


def _table_by_loop(
    sizes: list[int], fixed: int, count: int, chunks: list[int], offsets: list[int]
) -> list[tuple[int, int]]:
    """The samples a sample table places, as ``mp4._samples`` found them a sample at a time
    until the places were held as arrays: what ``places.table`` must give."""
    firsts, per_chunk = chunks[0::3], chunks[1::3]
    found: list[tuple[int, int]] = []
    run = -1
    for chunk, offset in enumerate(offsets, start=1):
        while run + 1 < min(len(firsts), len(per_chunk)) and firsts[run + 1] <= chunk:
            run += 1
        if run < 0:
            break
        at = offset
        for _ in range(min(per_chunk[run], count - len(found))):
            size = fixed or sizes[len(found)]
            found.append((at, at + size))
            at += size
        if len(found) >= count:
            break
    return found


def _sample_table(rng: random.Random, wide: int) -> tuple[bytes, list[tuple[int, int]]]:
    """A sample table's boxes, damaged or not, with the places the loop finds in them."""
    fixed = rng.choice((0, 0, rng.randrange(1, 5000)))
    sizes = [rng.randrange(0, 5000) for _ in range(rng.randrange(0, 60))]
    claimed = rng.choice((len(sizes), rng.randrange(0, 80), 0xFFFFFFFF))
    entries = rng.randrange(0, 6)
    firsts = sorted(rng.randrange(1, 12) for _ in range(entries))
    if rng.random() < 0.3:  # out of order, or not from chunk 1
        firsts = [rng.randrange(0, 12) for _ in range(entries)]
    chunks: list[int] = []
    for first in firsts:
        per = rng.choice((rng.randrange(0, 20), 0, 0xFFFFFFFF))
        chunks += [first, per, rng.randrange(1, 3)]
    chunks = chunks[: len(chunks) - rng.choice((0, 0, 1, 2))]  # a table's end cut
    offsets = [rng.randrange(0, 1 << (8 * wide - 2)) for _ in range(rng.randrange(0, 25))]
    stsz = _full(b"stsz", struct.pack(f">LL{len(sizes)}L", fixed, claimed, *sizes))
    stsc = _full(b"stsc", struct.pack(f">L{len(chunks)}L", entries, *chunks))
    form = "L" if wide == 4 else "Q"
    kind = b"stco" if wide == 4 else b"co64"
    offsets_box = _full(kind, struct.pack(f">L{len(offsets)}{form}", len(offsets), *offsets))
    count = min(claimed, mp4.MP4_SAMPLES, mp4.MP4_SAMPLES if fixed else len(sizes))
    return stsz + stsc + offsets_box, _table_by_loop(sizes, fixed, count, chunks, offsets)


@pytest.mark.parametrize("wide", [4, 8])
def test_a_sample_tables_places_are_those_its_entries_give(monkeypatch, wide):
    """``places.table`` works out without a loop in Python what the loop over the tables'
    numbers found: in 600 tables, sound and damaged (entries out of order or not from chunk
    1, chunks of no samples or of 4 billion, tables cut, more samples claimed than sized),
    each a track's first ``MP4_SAMPLES``."""
    monkeypatch.setattr(mp4, "MP4_SAMPLES", 40)
    rng = random.Random(wide)  # noqa: S311 - a seeded stream of test inputs
    placed = 0
    for _ in range(600):
        table, expected = _sample_table(rng, wide)
        starts, stops = mp4._samples(table, 0, len(table))
        assert list(zip(starts.tolist(), stops.tolist(), strict=True)) == expected
        placed += len(expected)
    assert placed > 1500  # (most tables place samples)


def test_offsets_past_any_file_place_samples_there(monkeypatch):
    """A 64-bit chunk offset past 2**62 places its samples at 2**62: past any file, never
    read (64-bit arithmetic does not wrap them before the file's start)."""
    table = _full(b"stsz", struct.pack(">LL", 10, 2))
    table += _full(b"stsc", struct.pack(">LLLL", 1, 1, 2, 1))
    table += _full(b"co64", struct.pack(">LQ", 1, (1 << 64) - 1))
    starts, stops = mp4._samples(table, 0, len(table))
    assert starts.tolist() == [places.FAR, places.FAR + 10]
    assert stops.tolist() == [places.FAR + 10, places.FAR + 20]


def _run_by_loop(
    b: bytes, end: int, track: int, base: int, size: int, found: list[tuple[int, int, int]]
) -> int:
    """A track run's samples (``trun``'s payload, ``b``, to ``end``) as ``mp4._run`` added
    them a sample at a time until the places were held as arrays."""
    if end < 8:
        return base
    flags = int.from_bytes(b[1:4], "big")
    count, at = int.from_bytes(b[4:8], "big"), 8
    if flags & mp4.TRUN_OFFSET:
        base += int.from_bytes(b[at : at + 4], "big", signed=True)
        at += 4
    at += 4 * bool(flags & mp4.TRUN_FIRST_FLAGS)
    each = 4 * (flags & mp4.TRUN_SAMPLE_FIELDS).bit_count()
    size_at = 4 * bool(flags & mp4.TRUN_DURATION)
    for _ in range(min(count, mp4.MP4_SAMPLES - len(found))):
        if at + each > end:
            break
        if flags & mp4.TRUN_SIZE:
            size = int.from_bytes(b[at + size_at : at + size_at + 4], "big")
        found.append((track, base, base + size))
        base, at = base + size, at + each
    return base


def test_a_track_runs_places_are_those_its_entries_give(monkeypatch):
    """A movie fragment's runs, their sizes read as arrays: the places are what the loop
    over their entries found, for runs of every set of fields, cut or not, claiming more
    samples than they hold, with offsets back and forth, the second track fragment's data
    after the first's; the fragment's runs together place ``MP4_SAMPLES`` at most."""
    monkeypatch.setattr(mp4, "MP4_SAMPLES", 50)
    rng = random.Random(6)  # noqa: S311 - a seeded stream of test inputs
    fields = (mp4.TRUN_OFFSET, mp4.TRUN_FIRST_FLAGS, *(0x100, 0x200, 0x400, 0x800))
    placed = 0
    for _ in range(300):
        expected: list[tuple[int, int, int]] = []
        origin, size = rng.randrange(0, 1 << 40), rng.randrange(0, 3000)
        old = origin  # the fragment's start: the first track fragment's data counted from
        fragments = b""
        for first in (True, False)[: rng.randrange(1, 3)]:
            flags = mp4.TFHD_SIZE | (mp4.TFHD_BASE_IS_MOOF if first else 0)
            runs = b""
            for _ in range(rng.randrange(1, 4)):
                how = sum(f for f in fields if rng.random() < 0.5)
                count = rng.choice((rng.randrange(0, 30), 0xFFFFFFFF))
                payload = bytes([0]) + how.to_bytes(3, "big") + count.to_bytes(4, "big")
                payload += rng.randrange(-(1 << 31), 1 << 31).to_bytes(4, "big", signed=True)
                payload += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 500)))
                cut = rng.randrange(0, len(payload) + 1)  # its box's end
                if how & mp4.TRUN_OFFSET and 8 <= cut < 12:
                    cut = 12  # (a cut offset is read on into the next box's bytes, as it was)
                payload = payload[:cut]
                runs += _box(b"trun", payload)
                old = _run_by_loop(payload, len(payload), 1, old, size, expected)
            header = _full(b"tfhd", struct.pack(">LL", 1, size), flags=flags)
            fragments += _box(b"traf", header + runs)
        moof = _box(b"moof", fragments)
        got = [
            (track, start, stop)
            for track, starts, stops in mp4._fragment_samples(moof, 0, 8, len(moof), {}, origin)
            for start, stop in zip(starts.tolist(), stops.tolist(), strict=True)
        ]
        assert got == expected
        placed += len(got)
    assert placed > 2000  # (most runs place samples)


def test_a_fragment_of_many_runs_is_read_in_time_linear_in_them(monkeypatch):
    """Each run is told the room the fragment's runs before it left (it summed them all:
    40,000 runs of a sample each took 37 s, 0.27 s before the places were arrays)."""
    monkeypatch.setattr(mp4, "MP4_SAMPLES", 250)
    rooms: list[int] = []
    run = mp4._run
    monkeypatch.setattr(mp4, "_run", lambda *a: rooms.append(a[-1]) or run(*a))
    trun = _full(b"trun", struct.pack(">LL", 1, 20), flags=0x200)
    header = _full(b"tfhd", struct.pack(">LL", 1, 20), flags=mp4.TFHD_SIZE)
    moof = _box(b"moof", _box(b"traf", header + trun * 300))
    runs = mp4._fragment_samples(moof, 0, 8, len(moof), {}, 0)
    assert len(runs) == 250
    assert rooms == [*range(250, 0, -1), *[0] * 50]


def test_places_keep_their_order_and_sort_as_their_tuples(monkeypatch):
    """Places held as arrays give back the tuples they were made of, in order, a ``STEP`` at
    a time; sorted, they are in the order their tuples sort in (by start, end, codec, length
    size); joined, cut, and those holding no byte left out, as lists of them would be."""
    monkeypatch.setattr(places, "STEP", 7)
    rng = random.Random(3)  # noqa: S311 - a seeded stream of test inputs
    listed: list[Place] = [
        (
            rng.randrange(0, 40),
            rng.randrange(0, 40),
            rng.choice((video.H264, video.HEVC)),
            rng.choice((1, 2, 4)),
        )
        for _ in range(60)
    ]
    held = Places.of(listed)
    assert list(held) == listed
    assert [held[i] for i in range(len(held))] == listed
    assert list(held.ordered()) == sorted(listed)
    tied = [(5, 9, video.HEVC, 4), (5, 7, video.HEVC, 4), (5, 7, video.H264, 4), (6, 7, "h264", 1)]
    assert list(Places.of(tied).ordered()) == sorted(tied)
    assert list(Places.of(listed + listed).ordered().distinct()) == sorted(set(listed))
    assert list(held.since(20)) == [p for p in listed if p[0] >= 20]
    assert list(held.nonempty()) == [p for p in listed if p[1] > p[0]]
    assert list(held.first(25)) == listed[:25]
    assert list(held.after(25)) == listed[25:]
    assert list(held.first(-1)) == []
    assert list(Places.join([held.first(10), Places.none(), held.after(10)])) == listed
    assert list(Places.join([])) == []
    assert list(Places.of([])) == []
    assert held.starts.nbytes + held.stops.nbytes + held.kinds.nbytes == 17 * len(listed)


def test_a_sample_placed_before_the_files_start_is_not_read():
    """A track run whose offset places a sample before the file's start: a held copy read
    it at a negative place, from the file's end (Python's slices), and blanked an SEI unit
    there that no run places, which a streamed copy (the sample gone before it began) kept.
    Such a sample is no sample of the file: neither reads it, and the copies are alike,
    both media data boxes zeroed (no sample places them)."""
    sei = _nal(b"\x06" + _escaped(_rbsp((5, UUID + MARK + TEXT))))
    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso6")
    config = _box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00")
    entry = _box(b"avc1", bytes(6) + b"\x00\x01" + bytes(70) + config)
    table = _full(b"stsd", b"\x00\x00\x00\x01" + entry) + _full(b"stsz", bytes(8))
    table += _full(b"stsc", bytes(4)) + _full(b"stco", bytes(4))
    tkhd = _full(b"tkhd", bytes(8) + struct.pack(">L", 1) + bytes(68))
    trak = _box(b"trak", tkhd + _box(b"mdia", _box(b"minf", _box(b"stbl", table))))
    trex = _full(b"trex", struct.pack(">LLLLL", 1, 1, 0, 0, 0))
    moov = _box(b"moov", trak + _box(b"mvex", trex))
    placed = _box(b"mdat", _nal(SLICE))
    unplaced = _box(b"mdat", sei + b"\x00\x00")  # at the file's end
    at = len(ftyp) + len(moov)  # the fragment's start

    def moof(offset: int, size: int) -> bytes:
        traf = _full(b"tfhd", struct.pack(">L", 1), flags=0x20000)  # from the fragment
        traf += _full(b"trun", struct.pack(">LlL", 1, offset, size), flags=0x201)
        return _box(b"moof", _full(b"mfhd", b"\x00\x00\x00\x01") + _box(b"traf", traf))

    # the sample runs from the unplaced unit's length, counted back from the file's start
    source = ftyp + moov + moof(-(at + len(sei) + 2), len(sei) + 12) + placed + unplaced
    held = bytearray(source)
    blanks.fill_in(held, mp4.parse(source)[0])
    streamed = bytearray(source)
    mp4.Mp4Walk(1 << 20).feed(streamed)
    assert source.endswith(sei + b"\x00\x00")
    head = len(source) - len(placed) - len(unplaced)
    zeroed = _box(b"mdat", bytes(len(placed) - 8)) + _box(b"mdat", bytes(len(unplaced) - 8))
    assert held == streamed == source[:head] + zeroed


def test_a_million_samples_places_are_held_in_tens_of_megabytes():
    """A movie box's table of 2**18 samples (2.4 hours at 30 a second): the places it gives,
    found and waiting to be read in a streamed walk, take under 64 bytes a sample at their
    peak, 17 held (Python tuples of Python numbers took 204 at their peak, 140 held, and
    1 s a million)."""
    n = 1 << 18
    config = _box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00")
    entry = _box(b"avc1", bytes(6) + b"\x00\x01" + bytes(70) + config)
    table = _full(b"stsd", b"\x00\x00\x00\x01" + entry)
    table += _full(b"stsz", struct.pack(">LL", 0, n) + np.full(n, 300, ">u4").tobytes())
    table += _full(b"stsc", struct.pack(">LLLL", 1, 1, 1, 1))
    table += _full(b"stco", struct.pack(">L", n) + (np.arange(n) * 300).astype(">u4").tobytes())
    trak = _box(b"trak", _box(b"mdia", _box(b"minf", _box(b"stbl", table))))
    source = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1") + _box(b"moov", trak)
    tracemalloc.start()
    try:
        walk = mp4.Mp4Walk(1 << 26)
        walk.feed(bytearray(source))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    waiting = walk._samples._pending
    assert len(waiting) == n
    assert waiting[n - 1] == (300 * (n - 1), 300 * n, video.H264, 4)
    assert peak - 2 * len(source) < 64 * n  # (the walk's copies of the file)


def test_a_movie_box_read_ahead_places_each_sample_once(monkeypatch):
    """A movie box at a streamed file's end, read ahead, places its samples again as the
    walk reaches it: those still to come (in its own fragment) were read twice, and those
    gone were queued again to be passed over one at a time. Each is read once now, and
    the copy is the held one."""
    source = _tracked_mp4(video.H264)
    second = source.index(b"\x41\x9a") - 4  # the second video sample, in the last fragment
    held = bytearray(source)
    blanks.fill_in(held, mp4.parse(source)[0])
    read: list[int] = []
    units = mp4._Samples._units
    monkeypatch.setattr(
        mp4._Samples, "_units", lambda s, *a: read.append(s._current[0]) or units(s, *a)
    )
    ahead = mp4.samples_ahead(lambda at, n: source[at : at + n], second, 1 << 20)
    assert len(ahead) == 2
    walk = mp4.Mp4Walk(1 << 20, ahead=ahead)
    buffers = [bytearray(source[:second]), bytearray(source[second:])]
    for buf in buffers:
        walk.feed(buf)
    assert b"".join(buffers) == held
    assert read == [int(ahead.starts[0]), second]


def test_samples_that_went_before_they_could_be_begun_are_passed_over_at_once(monkeypatch):
    """Samples that begin before the bytes the walk reads (they overlap those read, or a
    movie box placed them behind it) are passed over together, not looked at one by one."""
    looked: list[int] = []
    coming = mp4._Samples._coming_one
    monkeypatch.setattr(mp4._Samples, "_coming_one", lambda s: looked.append(s._next) or coming(s))
    samples = mp4._Samples(blank=True)
    samples.expect(Places.track(np.arange(50_000), np.arange(50_000) + 2, video.H264, 4))
    samples.feed(bytearray(10), 0)  # the samples at 0 to 9 read: a length, and no unit
    looked.clear()
    samples.feed(bytearray(10), 40_000)
    assert samples._next == 40_010
    assert looked == [10, *range(40_000, 40_011)]  # passed over; read; the next: past it
