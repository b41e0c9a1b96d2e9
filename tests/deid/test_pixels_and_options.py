"""Clean Pixel Data masks, and each option proven on an element it changes (#3)."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.uid import JPEGBaseline8Bit

from indexer import deid, keys, rules_file
from indexer.deid import Action, Option, build_plan
from indexer.deid.pixels import compile_masks
from indexer.deid.table import load_table
from indexer.errors import DeidError, RuleError
from indexer.work import configure_pydicom
from tests.builders import make_instance, to_bytes

configure_pydicom()
KEY = keys.generate().pseudonym
MASKS = {
    "masks": [
        {
            "manufacturer": "SyntheticCo",
            "rows": 16,
            "columns": 16,
            "rectangles": [[0, 0, 16, 2], [10, 10, 14, 12]],
        }
    ]
}


def _us(**elements):
    ds = make_instance(Modality="US", SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1", **elements)
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def _pixel(ds, x, y, spp=1, bps=2, planar=0, sample=0):
    cols, rows = int(ds.Columns), int(ds.Rows)
    if planar:
        off = (sample * rows * cols + y * cols + x) * bps
    else:
        off = ((y * cols + x) * spp + sample) * bps
    return ds.PixelData[off : off + bps]


def test_clean_policy_blanks_mask_rectangles_and_records_113101():
    plan = build_plan(burned_in="clean", pixel_masks=compile_masks(MASKS))
    before = _us()
    out = deid.apply(plan, _us(), KEY).ds
    for x, y in [(0, 0), (15, 1), (10, 10), (13, 11)]:
        assert _pixel(out, x, y) == b"\x00\x00"
    for x, y in [(0, 2), (14, 11), (9, 10), (5, 5)]:
        assert _pixel(out, x, y) == _pixel(before, x, y)
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in [i.CodeValue for i in out.DeidentificationMethodCodeSequence]


@pytest.mark.parametrize("planar", [0, 1])
def test_clean_policy_on_colour_pixels(planar):
    masks = compile_masks(
        {
            "masks": [
                {
                    "manufacturer": "SyntheticCo",
                    "rows": 4,
                    "columns": 4,
                    "rectangles": [[1, 1, 3, 2]],
                }
            ]
        }
    )
    ds = make_instance(
        Modality="US",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1",
        rows=4,
        columns=4,
        SamplesPerPixel=3,
        PhotometricInterpretation="RGB",
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PlanarConfiguration=planar,
    )
    ds.PixelData = bytes(range(1, 49))
    out = deid.apply(
        build_plan(burned_in="clean", pixel_masks=masks),
        pydicom.dcmread(io.BytesIO(to_bytes(ds))),
        KEY,
    ).ds
    for s in range(3):
        assert _pixel(out, 1, 1, 3, 1, planar, s) == b"\x00"
        assert _pixel(out, 2, 1, 3, 1, planar, s) == b"\x00"
        assert _pixel(out, 0, 1, 3, 1, planar, s) != b"\x00"
        assert _pixel(out, 1, 2, 3, 1, planar, s) != b"\x00"


def test_clean_policy_refuses_unknown_devices_and_compressed_pixels():
    plan = build_plan(burned_in="clean", pixel_masks=compile_masks(MASKS))
    with pytest.raises(DeidError, match="no pixel mask") as e:
        deid.apply(plan, _us(Manufacturer="OtherCo"), KEY)
    assert e.value.reason == "burned_in_annotation"
    ds = _us()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    with pytest.raises(DeidError, match="compressed"):
        deid.apply(plan, ds, KEY)


def test_bad_masks_and_missing_masks_are_refused(tmp_path):
    with pytest.raises(RuleError, match="mask 1: rectangle"):
        compile_masks(
            {
                "masks": [
                    {"manufacturer": "X", "rows": 4, "columns": 4, "rectangles": [[0, 0, 5, 1]]}
                ]
            }
        )
    with pytest.raises(RuleError, match="needs a pixel masks file"):
        build_plan(burned_in="clean")
    path = tmp_path / "m.json"
    path.write_text(json.dumps(MASKS))
    assert rules_file.load_masks(path)[0].rows == 16


def _example_rows(option):
    """For an option: exact rows it changes, with a settable VR, one per resulting action."""
    seen = {}
    for row in load_table():
        if (
            option in row.options
            and row.tag.is_exact
            and row.keyword
            and row.tag.value >> 16 != 0x0002
        ):  # file meta is rebuilt, not walked
            vr = str(dictionary_VR(row.tag.value)).split(" or ")[0]
            if vr in ("LO", "SH", "DA", "UI", "PN", "CS", "DT") and row.options[option] not in seen:
                seen[row.options[option]] = (row, vr)
    return seen


VALUES = {
    "LO": "VALUE LO 1",
    "SH": "VALSH1",
    "DA": "20200305",
    "UI": "1.2.999.5",
    "PN": "Some^Body",
    "CS": "VALCS",
    "DT": "20200305101010",
}


# options whose rows are sequences, masks or private blocks have tests of their own below
ELEMENT_OPTIONS = [
    o
    for o in Option
    if o not in (Option.RETAIN_SAFE_PRIVATE, Option.CLEAN_GRAPHICS, Option.CLEAN_STRUCTURED_CONTENT)
]


@pytest.mark.parametrize("option", ELEMENT_OPTIONS, ids=lambda o: o.value)
def test_each_option_changes_what_its_column_says(option):
    examples = _example_rows(option)
    assert examples, option
    for action, (row, vr) in examples.items():
        keyword = keyword_for_tag(row.tag.value)
        ds = make_instance(**{keyword: VALUES[vr]})
        if keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            ds = make_instance()
        original = str(ds[keyword].value)
        out = deid.apply(
            build_plan([option.value]), pydicom.dcmread(io.BytesIO(to_bytes(ds))), KEY
        ).ds
        got = str(out[keyword].value) if keyword in out else None
        if action is Action.KEEP:
            assert got == original, (option, keyword)
        else:  # C: cleaned, not the original
            assert got != original, (option, keyword)
            if vr == "DA" and option is Option.RETAIN_LONG_MODIFIED_DATES:
                assert got is not None
                assert len(got) == 8


def _sr():
    from pydicom.dataset import Dataset  # noqa: PLC0415
    from pydicom.sequence import Sequence  # noqa: PLC0415

    concept = Dataset()
    concept.CodeValue = "121071"
    concept.CodingSchemeDesignator = "DCM"
    concept.CodeMeaning = "Finding"
    item = Dataset()
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([concept])
    item.TextValue = "Mrs SRMARK seen on 3 May"
    ds = make_instance()
    ds.ContentSequence = Sequence([item])
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def test_structured_content_replaced_by_default_cleaned_with_the_option():
    basic = deid.apply(build_plan(), _sr(), KEY).ds.ContentSequence[0]
    assert "SRMARK" not in basic.TextValue
    assert basic.ConceptNameCodeSequence[0].CodeMeaning == "ANONYMIZED"  # D: all replaced
    assert basic.ValueType == "TEXT"  # structure (CS) stays
    clean = deid.apply(build_plan(["clean-structured-content"]), _sr(), KEY).ds
    item = clean.ContentSequence[0]
    assert "SRMARK" not in item.TextValue
    assert item.ConceptNameCodeSequence[0].CodeMeaning == "Finding"  # C: codes kept
    assert "113104" in [i.CodeValue for i in clean.DeidentificationMethodCodeSequence]


def test_clean_graphics_removes_bitmaps_it_cannot_clean():
    ds = make_instance()
    ds.add_new(0x60000010, "US", 16)
    ds.add_new(0x60000011, "US", 16)
    ds.add_new(0x60003000, "OW", b"\x01" * 32)
    ds.add_new(0x60004000, "LT", "overlay about OVMARK")
    out = deid.apply(
        build_plan(["clean-graphics"]), pydicom.dcmread(io.BytesIO(to_bytes(ds))), KEY
    ).ds
    assert not any(t >> 16 == 0x6000 for t in out.keys())  # noqa: SIM118


def test_retain_safe_private_keeps_listed_elements_only():
    from indexer.deid.profile import compile_plan  # noqa: PLC0415

    safe = {("SYNTHETIC PHI", 0x0009, 0x02): "UI"}
    plan = compile_plan(load_table(), [Option.RETAIN_SAFE_PRIVATE], safe_private=safe)
    out = deid.apply(plan, pydicom.dcmread(io.BytesIO(to_bytes(make_instance()))), KEY).ds
    block = out.private_block(0x0009, "SYNTHETIC PHI")
    assert block[0x02].value  # on the list: kept, with its creator
    assert 0x00091001 not in out  # not on the list: removed
    without = deid.apply(
        compile_plan(load_table(), [], safe_private=safe),
        pydicom.dcmread(io.BytesIO(to_bytes(make_instance()))),
        KEY,
    ).ds
    assert not any(e.tag.is_private for e in without)  # the option is what keeps it
    assert "113111" in [i.CodeValue for i in out.DeidentificationMethodCodeSequence]


def test_a_private_copy_of_a_time_kept_with_modified_dates_is_no_leak(tmp_path):
    """Retain Longitudinal Temporal Information with Modified Dates moves dates by whole days
    and keeps times of day. A vendor's private copy of the Study Time goes with its block:
    found in the kept Study Time, it is no leak, and the object is written (it was refused)."""
    from indexer.records import SourceFile  # noqa: PLC0415
    from indexer.store.files import LocalStore  # noqa: PLC0415
    from indexer.work import RunContext, prepare  # noqa: PLC0415

    ds = make_instance()
    ds.AcquisitionTime = ds.StudyTime
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x20, "TM", ds.StudyTime)
    data = to_bytes(ds)
    store = LocalStore(tmp_path / "out")
    ctx = RunContext(
        build_plan([Option.RETAIN_LONG_MODIFIED_DATES.value]), keys.generate(), store, "DI", 30, 1
    )
    try:
        out = prepare(SourceFile("src-1", "/a/1.dcm", len(data), lambda: data), ctx).result.ds
    finally:
        store.close()
    assert out.StudyTime == ds.StudyTime
    assert out.AcquisitionTime == ds.StudyTime
    assert out.StudyDate != ds.StudyDate
    assert 0x00091020 not in out
