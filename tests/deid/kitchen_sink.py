"""A kitchen-sink object: a unique marker in every valued Table E.1-1 attribute we can set,
top level and nested in a kept sequence, in private blocks, overlays, curves, SR content,
functional groups, the preamble and the file meta."""

from __future__ import annotations

import datetime as dt

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from indexer.deid.table import load_table
from tests.builders import make_instance

TEXT_MAX = {
    "AE": 16,
    "CS": 16,
    "SH": 16,
    "LO": 64,
    "PN": 64,
    "ST": 1024,
    "LT": 1024,
    "UT": 1024,
    "UC": 1024,
    "UR": 1024,
}


def _value(vr: str, n: int) -> object | None:  # noqa: C901 - one case per VR
    mark = f"MK{n:04d}X"
    if vr in TEXT_MAX:
        text = f"Z{mark}" if vr == "CS" else f"val {mark}"
        if vr == "PN":
            text = f"Name^{mark}"
        if vr == "AE":
            text = mark
        if vr == "UR":
            text = f"http://example.invalid/{mark}"
        return text[: TEXT_MAX[vr]].upper() if vr == "CS" else text[: TEXT_MAX[vr]]
    day = dt.date(1931, 1, 1) + dt.timedelta(days=n * 7)  # a distinct date per attribute
    if vr == "DA":
        return day.strftime("%Y%m%d")
    if vr == "TM":
        return f"{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}.{n:04d}"
    if vr == "DT":
        return day.strftime("%Y%m%d") + f"{n % 24:02d}1010.{n:04d}"
    if vr == "UI":
        return f"1.2.999.{n}.77"
    if vr == "AS":
        return "042Y"
    if vr in ("OB", "UN"):
        return f"bytes {mark} ".encode()
    return None


def build(marker_base: int = 0) -> tuple[Dataset, dict[int, str]]:
    """The object and tag -> marker for every top-level value that holds one."""
    ds = make_instance(marker="KSMARK")
    # values an option may retain hold markers of their own, shared with nothing else
    ds.InstitutionName = "General Hospital INSTMK0009"
    ds.AnatomicRegionSequence[0].ContentSequence[0].InstitutionName = "Deep INSTMK0010"
    markers: dict[int, str] = {}
    region_item = ds.AnatomicRegionSequence[0]
    for i, row in enumerate(load_table()):
        if not row.tag.is_exact or not row.keyword or row.keyword in ds:
            continue
        try:
            vr = dictionary_VR(row.tag.value)
        except KeyError:
            continue
        if vr == "SQ":
            item = Dataset()
            item.PersonName = f"Seq^MK{marker_base + i:04d}Q"
            item.CodeMeaning = "a kept, non-identifying meaning"
            ds.add_new(row.tag.value, "SQ", Sequence([item]))
            markers[row.tag.value] = f"MK{marker_base + i:04d}Q"
            continue
        value = _value(vr, marker_base + i)
        if value is None or row.tag.value >> 16 == 0x0002 or row.tag.value >> 16 == 0x0000:
            continue
        ds.add_new(row.tag.value, vr, value)
        # the same attribute nested in a kept sequence
        region_item.add_new(row.tag.value, vr, value)
        if isinstance(value, str) and "MK" in value:
            markers[row.tag.value] = f"MK{marker_base + i:04d}X"
    # overlays and curves
    ds.add_new(0x60003000, "OW", b"OVLMK0001" * 8)
    ds.add_new(0x60004000, "LT", "overlay comment OVLMK0002")
    ds.add_new(0x50002000, "LT", "curve comment CRVMK0003")
    # SR-like content in a kept structure
    content = Dataset()
    content.TextValue = "report about SRMK0004"
    content.PersonName = "Reporter^SRMK0005"
    ds.ContentSequence = Sequence([content])
    # multi-frame functional groups with identifying values inside
    frame = Dataset()
    frame.AcquisitionDateTime = "20230115101010"
    frame.StationName = "FGMK0006"
    ds.PerFrameFunctionalGroupsSequence = Sequence([frame])
    ds.file_meta.SourceApplicationEntityTitle = "METAMK0007"
    ds.preamble = b"PREAMBLEMK0008 " * 8 + b"\x00" * 8
    return ds, markers
