"""Clean Pixel Data (PS3.15 E.3.1, code 113101): blank rectangles where a device burns in text.

Masks are keyed by manufacturer, model (optional) and image size; the rectangles are zeroed
in every frame and sample of native (uncompressed) pixel data, on the raw bytes, so nothing
is decoded or re-encoded. Compressed pixel data, or a device without a mask, cannot be
cleaned: the object is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from indexer.errors import DeidError, RuleError


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
