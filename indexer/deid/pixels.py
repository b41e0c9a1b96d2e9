"""Clean Pixel Data (PS3.15 E.3.1, code 113101): blank rectangles where a device burns in text.

Masks are keyed by manufacturer, model (optional) and image size; the rectangles are zeroed
in every frame and sample of native (uncompressed) pixel data, on the raw bytes, so nothing
is decoded or re-encoded. Compressed pixel data, or a device without a mask, cannot be
cleaned: the object is refused.

Native pixel data longer than its image (``cut_excess``) is cut to the image's size: a damaged
length can swallow what followed it in the file (a trailing padding holding text), which
would otherwise be carried into the copy unseen by the leak check.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from indexer import spans
from indexer.deid.rawvalue import DEFAULT, ELEMENT_ERRORS, UNDECODED, decode
from indexer.errors import DeidError, RuleError
from indexer.spans import Span

SAMPLES_PER_PIXEL, PHOTOMETRIC, FRAMES = 0x00280002, 0x00280004, 0x00280008
ROWS, COLUMNS, BITS_ALLOCATED = 0x00280010, 0x00280011, 0x00280100
BITS_STORED, HIGH_BIT, PIXEL_REPRESENTATION = 0x00280101, 0x00280102, 0x00280103
PIXEL_DATA = 0x7FE00010
# Pixel Data, Float Pixel Data, Double Float Pixel Data: native, their size is the image's
NATIVE_PIXEL_TAGS = (PIXEL_DATA, 0x7FE00008, 0x7FE00009)
UNDEFINED_LENGTH = 0xFFFFFFFF  # encapsulated (compressed) frames: items, never cut


@dataclass(frozen=True, slots=True)
class Mask:
    """Rectangles (x0, y0, x1, y1; x1 and y1 exclusive) for one device and image size."""

    manufacturer: str
    model: str | None
    rows: int
    columns: int
    rectangles: tuple[tuple[int, int, int, int], ...]

    def matches(self, ds: Dataset) -> bool:
        """Whether this mask is for the object's device and size."""
        if str(ds.get("Manufacturer", "")).strip().lower() != self.manufacturer.lower():
            return False
        model = str(ds.get("ManufacturerModelName", "")).strip().lower()
        if self.model is not None and model != self.model.lower():
            return False
        return int(ds.get("Rows", 0)) == self.rows and int(ds.get("Columns", 0)) == self.columns


def compile_masks(doc: Mapping[str, Any]) -> tuple[Mask, ...]:
    """Masks from a parsed masks file; RuleError names the bad entry.

    The file holds ``{"masks": [{manufacturer, model?, rows, columns, rectangles:
    [[x0, y0, x1, y1], ...]}]}``.
    """
    masks = []
    for i, m in enumerate(doc.get("masks", []), start=1):
        try:
            rects = tuple(_rect(r, int(m["rows"]), int(m["columns"])) for r in m["rectangles"])
            masks.append(
                Mask(
                    str(m["manufacturer"]), m.get("model"), int(m["rows"]), int(m["columns"]), rects
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RuleError(f"mask {i}: {e}") from None
    return tuple(masks)


def _rect(r: Sequence[int], rows: int, columns: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in r)
    if not (0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows):
        raise ValueError(f"rectangle {list(r)} is not inside {columns}x{rows}")
    return x0, y0, x1, y1


def clean(ds: Dataset, masks: Iterable[Mask]) -> None:
    """Zero the matching mask's rectangles in the pixel data, or refuse the object."""
    mask = next((m for m in masks if m.matches(ds)), None)
    if mask is None:
        raise DeidError(
            "no pixel mask for this device and image size: burned-in text cannot be cleaned",
            reason="burned_in_annotation",
        )
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None and ts.is_compressed:
        raise DeidError(
            "compressed pixel data cannot be cleaned without decoding",
            reason="burned_in_annotation",
        )
    bps = (int(ds.BitsAllocated) + 7) // 8
    spp = int(ds.get("SamplesPerPixel", 1))
    planar = int(ds.get("PlanarConfiguration", 0))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    data = bytearray(ds.PixelData)
    frame_size = rows * cols * spp * bps
    if len(data) < frame_size * frames:
        raise DeidError("pixel data is shorter than its attributes say", reason="bad_pixels")
    for f in range(frames):
        base = f * frame_size
        for x0, y0, x1, y1 in mask.rectangles:
            for y in range(y0, y1):
                if planar == 1 and spp > 1:  # RRR... GGG... BBB...
                    for s in range(spp):
                        start = base + (s * rows * cols + y * cols + x0) * bps
                        data[start : start + (x1 - x0) * bps] = bytes((x1 - x0) * bps)
                else:  # RGBRGB... or one sample
                    start = base + (y * cols + x0) * spp * bps
                    data[start : start + (x1 - x0) * spp * bps] = bytes((x1 - x0) * spp * bps)
    ds.PixelData = bytes(data)
    ds.BurnedInAnnotation = "NO"


def image_size(ds: Dataset) -> int | None:
    """The bytes of native pixel data the Image Pixel attributes of ``ds`` describe.

    Rows * Columns * Samples per Pixel * Bits Allocated * Number of Frames (one if absent)
    in whole bytes, padded to an even length; YBR_FULL_422 holds two samples a pixel
    (PS3.5 8.2.1, PS3.3 C.7.6.3.1.2). None where an attribute is absent, is no positive
    number or cannot be read: then nothing tells where the image ends.
    """
    numbers = [_positive(ds, tag) for tag in (ROWS, COLUMNS, SAMPLES_PER_PIXEL)]
    bits = _positive(ds, BITS_ALLOCATED)
    frames = _positive(ds, FRAMES) if FRAMES in ds._dict else 1  # noqa: SLF001 - as read
    if None in numbers or bits is None or frames is None:
        return None
    rows, columns, samples = numbers
    try:
        subsampled = samples == 3 and _peek(ds, PHOTOMETRIC) == "YBR_FULL_422"  # noqa: PLR2004
    except (KeyError, *ELEMENT_ERRORS):
        subsampled = False  # three samples a pixel: the larger size, nothing of the image cut
    size = (rows * columns * (2 if subsampled else samples) * bits * frames + 7) // 8  # type: ignore[operator]
    return size + size % 2


def _positive(ds: Dataset, tag: int) -> int | None:
    number = _number(ds, tag)
    return number if number is not None and number > 0 else None


def _number(ds: Dataset, tag: int) -> int | None:
    """Element ``tag`` as one whole number; None where absent, damaged or several."""
    if tag not in ds._dict:  # noqa: SLF001 - as read, not converted
        return None
    try:
        return int(_peek(ds, tag))
    except ELEMENT_ERRORS:
        return None


def _peek(ds: Dataset, tag: int) -> Any:  # noqa: ANN401
    """The value of element ``tag`` of ``ds``, its stored element left unconverted.

    (Converted in place, a damaged element would no longer be judged by its bytes as read.)
    """
    stored = ds._dict[tag]  # type: ignore[index]  # noqa: SLF001 - as read
    if not isinstance(stored, RawDataElement):
        return stored.value
    if type(stored.VR) is str and stored.is_little_endian:  # numbers and codes: no charset
        value = decode(stored, stored.VR, DEFAULT)
        if value is not UNDECODED:
            return value
    return convert_raw_data_element(stored, ds=ds).value


def overlong(ds: Dataset) -> list[tuple[BaseTag, Any, int]]:
    """Native pixel data elements of ``ds`` longer than its ``image_size``.

    (Stored key, stored element, the image's size) of each. Encapsulated frames, pixel data
    no longer than its image, and an image whose size cannot be told are none of them.
    """
    found: list[tuple[BaseTag, Any, int]] = []
    size: int | None = None
    for tag in NATIVE_PIXEL_TAGS:
        key = BaseTag(tag)
        stored = ds._dict.get(key)  # noqa: SLF001 - as read, not converted
        if stored is None or undefined_length(stored):
            continue
        value = stored.value
        if not isinstance(value, bytes | memoryview | spans.Span):
            continue
        size = size if size is not None else image_size(ds)
        if size is None:
            break
        if len(value) > size:
            found.append((key, stored, size))
    return found


def cut_excess(ds: Dataset) -> list[tuple[int, str, int]]:
    """Cut native pixel data of ``ds`` to its ``image_size``; (tag, VR, bytes dropped) of each.

    The bytes past the image are nothing a reader shows: what a damaged length took in of
    the elements after it, or a writer's slack. A view of the bytes read stays a view, a
    span of the source a span (``spans.Cut``).
    """
    dropped: list[tuple[int, str, int]] = []
    for key, stored, size in overlong(ds):
        value = stored.value
        cut = (
            spans.Cut(value, value.start, value.start + size)
            if isinstance(value, spans.Span)
            else value[:size]
        )
        if isinstance(stored, RawDataElement):
            ds._dict[key] = stored._replace(value=cut, length=size)  # type: ignore[arg-type]  # noqa: SLF001
        else:  # converted (pixels cleaned): bytes held
            stored.value = cut.read() if isinstance(cut, spans.Span) else bytes(cut)
        dropped.append((key.real, str(stored.VR or ""), len(value) - size))
    return dropped


def past_the_image(ds: Dataset) -> bytes:
    """The bytes of native pixel data of ``ds`` past its image (of values held, not spans)."""
    return b"".join(
        bytes(stored.value[size:])
        for _key, stored, size in overlong(ds)
        if not isinstance(stored.value, spans.Span)
    )


def undefined_length(stored: object) -> bool:
    """Whether a stored element (raw or converted) has an undefined length: encapsulated."""
    if isinstance(stored, RawDataElement):
        return stored.length == UNDEFINED_LENGTH
    return bool(getattr(stored, "is_undefined_length", False))


@dataclass(frozen=True, slots=True)
class BitLayout:
    """Where a sample's stored bits lie in its allocated ones (``bit_layout``)."""

    dtype: str  # numpy's: byte order and size
    keep: int  # the stored bits
    unused: int  # the others
    above: int  # the others over High Bit
    high: int
    signed: bool

    @property
    def size(self) -> int:
        """Bytes a sample."""
        return int(self.dtype[2:])


def bit_layout(ds: Dataset, stored: object) -> BitLayout | None:
    """The layout of the samples of ``ds``; None where all bits are stored, or it cannot be told.

    ``stored`` is its Pixel Data element, whose byte order is the file's.
    """
    allocated, bits = _number(ds, BITS_ALLOCATED), _number(ds, BITS_STORED)
    high, signed = _number(ds, HIGH_BIT), _number(ds, PIXEL_REPRESENTATION)
    if allocated not in (8, 16, 32) or bits is None or high is None or signed not in (0, 1):
        return None
    if not 0 < bits < allocated or not bits - 1 <= high < allocated:
        return None
    little = (
        stored.is_little_endian
        if isinstance(stored, RawDataElement)
        else (getattr(ds, "original_encoding", None) or (None, True))[1]  # as read
    )
    full = (1 << allocated) - 1
    below = (1 << (high - bits + 1)) - 1  # bits under the lowest stored one
    above = full ^ ((1 << (high + 1)) - 1)  # bits over High Bit
    order = "<" if little is not False else ">"
    keep = full ^ below ^ above
    return BitLayout(f"{order}u{allocated // 8}", keep, full ^ keep, above, high, bool(signed))


def cleared(value: bytes | memoryview, layout: BitLayout) -> tuple[bytes, int] | None:
    """``value``'s samples with only their stored bits (and a signed one's sign above them).

    With how many samples changed; None where none did. Bytes past the last whole sample stay.
    """
    np = importlib.import_module("numpy")  # only here: an import of 0.1 s
    samples = np.frombuffer(value, dtype=layout.dtype, count=len(value) // layout.size)
    if not samples.size or _clean_already(samples, layout):
        return None
    clean = samples & layout.keep
    if layout.signed:
        clean = np.where(samples & (1 << layout.high), clean | layout.above, clean)
    changed = int(np.count_nonzero(clean != samples))
    if not changed:
        return None
    rest = bytes(value[len(samples) * layout.size :])
    return clean.astype(samples.dtype, copy=False).tobytes() + rest, changed


def _clean_already(samples: Any, layout: BitLayout) -> bool:  # noqa: ANN401 - numpy's array
    """Whether no sample has a bit to clear: one pass (two, signed) that holds no copy.

    The common layout, stored bits from bit 0: unsigned samples no greater than the stored
    bits can hold; signed ones, read as signed, within the stored bits' range (sign-extended).
    """
    if layout.unused != layout.above:  # bits under the stored ones: tested as they are
        return not (samples & layout.unused).any() and not layout.signed
    if not layout.signed:
        return bool(samples.max() <= layout.keep)
    signed = samples.view(layout.dtype.replace("u", "i"))
    return bool(signed.min() >= -(1 << layout.high) and signed.max() < 1 << layout.high)


@dataclass(frozen=True, slots=True)
class Masked(Span):
    """Native pixel data streamed from ``whole``, its samples ``cleared`` as they are copied."""

    whole: Span
    start: int
    end: int
    layout: BitLayout

    def chunks(self) -> Iterator[bytes]:
        """The samples, cleared, a chunk at a time (a sample cut by a chunk's end waits)."""
        carry = b""
        for chunk in self.whole.chunks():
            data = memoryview(carry + chunk if carry else chunk)
            whole = len(data) - len(data) % self.layout.size
            carry = bytes(data[whole:])
            for at in range(0, whole, MASK_BLOCK):  # numpy's arrays: a few of a block's size
                block = data[at : min(at + MASK_BLOCK, whole)]
                done = cleared(block, self.layout)
                yield done[0] if done is not None else bytes(block)
        yield carry


MASK_BLOCK = 1 << 18  # bytes of samples cleared at a time as they are streamed


def clear_unused_bits(ds: Dataset) -> int | None:
    """Clear the bits of native pixel data outside each sample's stored bits; how many changed.

    Bits Stored of Bits Allocated hold a sample, High Bit its top one. The other bits are no
    part of the image, and are where embedded overlays lay (retired in 2004, still in old
    archives): graphics and text a viewer that reads them shows, and that the removal of
    the overlay's attributes (60xx) leaves behind. They become what a reader that ignores
    them sees: zeros, and above a signed sample copies of its sign bit. Pixel data already
    so is left as it was (a view stays a view); samples whose layout the attributes cannot
    tell are left as they are. None: pixel data streamed from its source, cleared as copied.
    """
    stored = ds._dict.get(BaseTag(PIXEL_DATA))  # noqa: SLF001 - as read, not converted
    if stored is None or undefined_length(stored):
        return 0
    value = stored.value
    if not isinstance(value, bytes | memoryview | Span):
        return 0
    layout = bit_layout(ds, stored)
    if layout is None:
        return 0
    if isinstance(value, Span):
        new: bytes | Span = Masked(value, value.start, value.end, layout)
        changed = None
    else:
        done = cleared(value, layout)
        if done is None:
            return 0
        new, changed = done
    if isinstance(stored, RawDataElement):
        ds._dict[BaseTag(PIXEL_DATA)] = stored._replace(value=new)  # type: ignore[arg-type]  # noqa: SLF001
    else:  # converted (pixels cleaned): bytes held
        stored.value = new
    return changed
