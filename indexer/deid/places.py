"""Where an MP4 file's samples lie, held as arrays: a million in 17 MB, not 140.

A movie box's sample tables, or a movie fragment's track runs, may place millions of
samples (``MP4_SAMPLES`` of a track are looked at: 9.7 hours at 30 a second). As Python
tuples of Python numbers each took about 140 bytes held, and 204 at the peak; here each is
a start and an end (8 bytes each) and a kind (1 byte: its codec and its NAL units' length
size; ``ZEROED``: a text or metadata track's, zeroed whole; ``KEPT``: another track's, kept
unread), 56 bytes at the peak. Where they lie is worked out from the tables' numbers
without a loop in Python (``table``, ``run``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.deid.jpeg import JPEG
from indexer.deid.video import H264, HEVC

Place = tuple[int, int, str, int]  # a sample: start, end, codec, its units' length size
# (a Motion JPEG sample: ``JPEG``, 0)
ZEROED = "zeroed"  # the codec of a track whose samples are zeroed whole: text, metadata
# the codec of a track whose samples are kept unread: audio, video of other codecs, images
KEPT = "kept"
# (codec, length size) of each kind, in the order of those tuples: places sort as tuples did
KINDS = tuple(
    sorted(
        {(codec, size) for codec in (H264, HEVC) for size in (1, 2, 3, 4)}
        | {(ZEROED, 0), (KEPT, 0), (JPEG, 0)}
    )
)
_KIND = {kind: i for i, kind in enumerate(KINDS)}
FAR = 1 << 62  # where a table may place a sample at most (past any file: never read)
STEP = 1 << 12  # places made tuples at a time, as they are walked


def _numbers(values: np.ndarray | Sequence[int]) -> np.ndarray:
    """``values`` as 64-bit numbers (a new array), those past ``FAR`` (either way) at it."""
    array = np.asarray(values)
    if array.dtype == np.dtype(">u8"):  # (before they wrap)
        array = np.minimum(array, np.uint64(FAR))
    numbers = array.astype(np.int64)
    return np.clip(numbers, -FAR, FAR, out=numbers)


@dataclass(frozen=True, slots=True)
class Places:
    """Samples: where each begins and ends in the file, and its kind (``KINDS``)."""

    starts: np.ndarray
    stops: np.ndarray
    kinds: np.ndarray

    @classmethod
    def none(cls) -> Places:
        """No sample."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8))

    @classmethod
    def track(cls, starts: np.ndarray, stops: np.ndarray, codec: str, size: int) -> Places:
        """A track's samples, ``codec``, NAL units each after a length of ``size`` bytes.

        ``starts``, ``stops``: ``table``'s or ``run``'s. A sample placed before the file's
        start (a run's negative offset) is dropped: it is no sample of the file.
        """
        keep = starts >= 0
        if not keep.all():
            starts, stops = starts[keep], stops[keep]
        return cls(starts, stops, np.full(len(starts), _KIND[codec, size], np.uint8))

    @classmethod
    def of(cls, places: Iterable[Place]) -> Places:
        """Held as arrays: ``places``, each (start, end, codec, length size)."""
        listed = list(places)
        if not listed:
            return cls.none()
        starts, stops, codecs, sizes = zip(*listed, strict=True)
        return cls(
            _numbers(starts),
            _numbers(stops),
            np.array([_KIND[kind] for kind in zip(codecs, sizes, strict=True)], np.uint8),
        )

    @classmethod
    def join(cls, parts: Sequence[Places]) -> Places:
        """``parts``' samples, in their order."""
        parts = [part for part in parts if len(part)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.none()
        return cls(
            np.concatenate([p.starts for p in parts]),
            np.concatenate([p.stops for p in parts]),
            np.concatenate([p.kinds for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Place:
        return (int(self.starts[i]), int(self.stops[i]), *KINDS[self.kinds[i]])

    def __iter__(self) -> Iterator[Place]:
        for at in range(0, len(self), STEP):
            part = slice(at, at + STEP)
            for start, stop, kind in zip(
                self.starts[part].tolist(),
                self.stops[part].tolist(),
                self.kinds[part].tolist(),
                strict=True,
            ):
                yield (start, stop, *KINDS[kind])

    def first(self, count: int) -> Places:
        """The first ``count`` of them (none for a count below 0)."""
        count = max(count, 0)
        return Places(self.starts[:count], self.stops[:count], self.kinds[:count])

    def after(self, count: int) -> Places:
        """Those after the first ``count``."""
        return Places(self.starts[count:], self.stops[count:], self.kinds[count:])

    def since(self, at: int) -> Places:
        """Those that begin at ``at`` or after."""
        keep = self.starts >= at
        return self if keep.all() else Places(self.starts[keep], self.stops[keep], self.kinds[keep])

    def nonempty(self) -> Places:
        """Those that hold a byte at least."""
        keep = self.stops > self.starts
        return self if keep.all() else Places(self.starts[keep], self.stops[keep], self.kinds[keep])

    def distinct(self) -> Places:
        """Each once (of those ``ordered``: the same ones lie together)."""
        same = (
            (self.starts[1:] == self.starts[:-1])
            & (self.stops[1:] == self.stops[:-1])
            & (self.kinds[1:] == self.kinds[:-1])
        )
        if not same.any():
            return self
        keep = np.concatenate(([True], ~same))
        return Places(self.starts[keep], self.stops[keep], self.kinds[keep])

    def merged(self) -> Places:
        """Those that overlap or touch made one, from the first's start to the last's end.

        For samples zeroed whole (``ZEROED``) or kept unread (``KEPT``): a text track's
        samples of a chunk, say, become one place. Each keeps the kind of the first it holds.
        """
        if len(self) < 2:  # noqa: PLR2004 - nothing to merge
            return self
        order = np.argsort(self.starts, kind="stable")
        starts, reach = self.starts[order], np.maximum.accumulate(self.stops[order])
        first = np.flatnonzero(np.concatenate(([True], starts[1:] > reach[:-1])))
        last = np.concatenate((first[1:] - 1, [len(starts) - 1]))
        return Places(starts[first], reach[last], self.kinds[order][first])

    def ordered(self) -> Places:
        """Sorted as their tuples would be: by start, then end, then kind."""
        if bool(np.all(self.starts[1:] > self.starts[:-1])):  # (as a track's table are)
            return self
        order = np.lexsort((self.kinds, self.stops, self.starts))
        return Places(self.starts[order], self.stops[order], self.kinds[order])


def table(
    sizes: np.ndarray, fixed: int, count: int, chunks: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the samples a sample table places, ``count`` of them at most.

    ``sizes``: each sample's size (``stsz``), or ``fixed`` for all (if not 0). ``chunks``:
    (first chunk, samples a chunk, description) each (``stsc``), the first chunk 1.
    ``offsets``: where each chunk begins (``stco`` or ``co64``). A chunk's samples follow
    one another from its offset, in the order of the sizes; each chunk has the samples a
    chunk of the last entry whose first chunk (or any before it) it has reached. With no
    such entry for chunk 1, none is placed.
    """
    firsts, per_chunk = chunks[0::3], chunks[1::3]
    entries = min(len(firsts), len(per_chunk))
    if count <= 0 or not entries or not len(offsets) or firsts[0] > 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    reached = np.maximum.accumulate(_numbers(firsts[:entries]))
    entry = np.searchsorted(reached, np.arange(1, len(offsets) + 1), side="right") - 1
    per = np.minimum(_numbers(per_chunk[:entries])[entry], count)
    del entry
    ends = np.cumsum(per)
    last = int(np.searchsorted(ends, count, side="left"))  # the chunk the count ends in
    if last < len(per):
        per = per[: last + 1]
        per[-1] -= ends[last] - count
    del ends
    placed = int(per.sum())
    each = np.full(placed, fixed, np.int64) if fixed else _numbers(sizes[:placed])
    starts = np.cumsum(each)
    starts -= each  # the bytes of the samples before each, in all chunks
    # each chunk's first sample (of a chunk of none: any), and where its samples are counted
    # from: its offset, less those bytes before that sample
    first = np.minimum(np.cumsum(per) - per, max(placed - 1, 0))
    begins = _numbers(offsets[: len(per)])
    begins -= starts[first] if placed else 0
    del first
    starts += np.repeat(begins, per)
    each += starts
    return starts, each


def run(
    entries: np.ndarray | None, count: int, size: int, base: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """(starts, ends) of a track run's ``count`` samples from ``base``; where its data ends.

    ``entries``: each sample's size, from its fields; None: each is ``size`` long.
    """
    each = np.full(count, size, np.int64) if entries is None else _numbers(entries[:count])
    base = int(np.clip(base, -FAR, FAR))
    starts = base + np.cumsum(each) - each
    return starts, starts + each, base + int(each.sum())
