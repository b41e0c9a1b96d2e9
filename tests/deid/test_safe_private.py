"""Retain Safe Private: PS3.15 Table E.3.10-1 as shipped, by creator, group, element and VR."""

from __future__ import annotations

import io
import struct
from importlib import resources
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ImplicitVRLittleEndian

from indexer import deid, rules_file
from indexer.deid import build_plan, verify
from indexer.deid.profile import fits
from indexer.deid.table import load_safe_private
from indexer.encode import encode
from indexer.work import configure_pydicom
from tests.builders import make_instance, to_bytes

KEY = b"k" * 32
MARKER = "PHIMARK"
PET = "Philips PET Private Group"
MR = "SIEMENS MR HEADER"
US = "SIEMENS Ultrasound SC2000"
NQ = "NQLeft"  # in no private dictionary of pydicom's: read as UN without its VR


@pytest.fixture(autouse=True)
def _pydicom():
    configure_pydicom()


def _planted(*, implicit: bool = False) -> bytes:
    ds = make_instance(1, 1, 1, 2 if implicit else 1, marker=MARKER)
    pet = ds.private_block(0x7053, PET, create=True)
    pet.add_new(0x00, "DS", "1.5")  # listed: SUV factor
    pet.add_new(0x09, "DS", "2.5")  # listed: activity concentration factor
    pet.add_new(0x01, "LO", f"{MARKER} not listed")
    other = ds.private_block(0x7055, PET, create=True)  # the creator elsewhere: not listed
    other.add_new(0x00, "DS", "3.5")
    mr = ds.private_block(0x0019, MR, create=True)
    mr.add_new(0x0C, "IS", "1000")  # listed IS: B value
    mr.add_new(0x0D, "LO", f"{MARKER} listed CS, written LO")
    us = ds.private_block(0x0129, US, create=True)
    us.add_new(0x02, "UI", ds.StudyInstanceUID)  # listed UI: a bookmark UID
    nq = ds.private_block(0x0199, NQ, create=True)
    nq.add_new(0x01, "FL", 0.25)  # listed FL
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return to_bytes(ds)


def _apply(options: list[str], *, implicit: bool = False) -> Dataset:
    data = _planted(implicit=implicit)
    return deid.apply(build_plan(options), pydicom.dcmread(io.BytesIO(data)), KEY).ds


def _private(ds: Dataset) -> dict[int, object]:
    return {int(e.tag): e.value for e in ds if e.tag.is_private}


def test_the_shipped_list_is_table_e_3_10_1():
    listed = load_safe_private()
    assert len(listed) == 130
    assert listed[(PET, 0x7053, 0x00)] == "DS"
    assert listed[(MR, 0x0019, 0x0C)] == "IS"
    assert listed[("ELSCINT1", 0x00E1, 0x21)] == "DS"
    assert listed[(US, 0x0119, 0x11)] == ""  # the table gives no VR
    assert ("ELSCINT1", 0x01F1, 0x21) not in listed  # one creator, another group
    edition = resources.files("indexer.deid").joinpath("SAFE_PRIVATE_EDITION")
    assert "Table E.3.10-1" in edition.read_text("utf-8")  # its provenance, beside it


def test_listed_elements_are_kept_and_nothing_else():
    out = _apply(["retain-safe-private"])
    kept = _private(out)
    assert kept[0x70531000] == "1.5"
    assert kept[0x70531009] == "2.5"
    assert kept[0x0019100C] == 1000
    assert kept[0x01991001] == 0.25
    assert 0x70531001 not in kept  # same block, not listed
    assert 0x70551000 not in kept  # same creator and element in another group
    assert 0x70550010 not in kept  # ... and its creator, whose block kept nothing
    assert 0x0019100D not in kept  # a listed slot holding another VR
    assert kept[0x70530010] == PET  # creators of kept elements stay
    # a listed UID is replaced like the public one it repeats
    assert kept[0x01291002] == out.StudyInstanceUID
    assert MARKER not in str(out)
    assert "113111" in [i.CodeValue for i in out.DeidentificationMethodCodeSequence]


def test_without_the_option_no_private_element_stays():
    assert not _private(_apply([]))


def test_retain_uids_keeps_a_listed_uid_as_it_was():
    original = pydicom.dcmread(io.BytesIO(_planted())).StudyInstanceUID
    out = _apply(["retain-safe-private", "retain-uids"])
    assert _private(out)[0x01291002] == original


def test_implicit_vr_keeps_listed_bytes_but_never_an_unread_uid():
    out = _apply(["retain-safe-private"], implicit=True)
    kept = _private(out)
    assert kept[0x70531000] == "1.5"  # pydicom knows its VR
    assert kept[0x01991001] == struct.pack("<f", 0.25)  # UN: its bytes, as listed FL
    assert 0x01291002 not in kept  # a UID read as UN cannot be replaced: removed
    assert 0x70531001 not in kept
    assert 0x0019100D not in kept  # pydicom's dictionary says CS: no code string, removed
    assert MARKER not in str(out)


HOLOGIC = "HOLOGIC, Inc."


@pytest.mark.parametrize("how", ["explicit", "implicit", "UN", "OB"])
@pytest.mark.parametrize("keep", ["retain-safe-private", "site rule"])
def test_a_kept_private_sequence_is_walked_however_it_was_written(how, keep):
    """A listed private sequence (Hologic's High Resolution Data Sequence), or one a site
    rule keeps, holding a patient's name. In an implicit VR object (no VR: its VR lies in a
    private dictionary) or written as UN or OB (an object made explicit without one), it was kept
    as bytes, its items unwalked: the name went into the copy, and the leak check never
    recorded it. Now its items are read as implicit VR little endian and walked, as an
    explicit VR sequence's always were."""
    ds = make_instance(1, 1, 1, 1, marker=MARKER)
    item = Dataset()
    item.CodeValue = "X1"
    item.PatientName = "Zqxwv^Hidden"  # nowhere else in the object
    block = ds.private_block(0x7E01, HOLOGIC, create=True)
    if how == "UN":  # a UN sequence's items: implicit VR little endian (PS3.5 6.2.2)
        items = b"".join(
            struct.pack("<HHL", t >> 16, t & 0xFFFF, len(v)) + v
            for t, v in ((0x00080100, b"X1"), (0x00100010, b"Zqxwv^Hidden"))
        )
        block.add_new(0x10, "UN", struct.pack("<HHL", 0xFFFE, 0xE000, len(items)) + items)
    else:
        block.add_new(0x10, "SQ", [item])
    if how == "implicit":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = to_bytes(ds)
    if how == "OB":  # its items in the file's own encoding, under OB
        head = struct.pack("<HH", 0x7E01, 0x1010) + b"SQ"
        assert data.count(head) == 1
        data = data.replace(head, head[:4] + b"OB")
    if keep == "site rule":
        rules = {"version": 1, "rules": [{"select": {"tag": "(7E01,xx10)"}, "method": "keep"}]}
        plan = build_plan((), rules=rules_file.compile_rules(rules))
    else:
        plan = build_plan([keep])
    found: dict[str, str] = {}
    out = deid.apply(plan, pydicom.dcmread(io.BytesIO(data)), KEY, found=found).ds
    assert found["Zqxwv^Hidden"] == "(7E01,1010)[0].(0010,0010)"
    values = verify.identifying_values(plan, pydicom.dcmread(io.BytesIO(data)))
    assert values["Zqxwv^Hidden"] == "(7E01,1010)[0].(0010,0010)"  # `verify` as well
    copy = encode(out).data
    assert b"Zqxwv" not in copy
    assert MARKER.encode() not in copy
    (kept,) = pydicom.dcmread(io.BytesIO(copy))[0x7E011010].value
    assert kept.CodeValue == "X1"
    assert not kept.PatientName


def test_explain_names_why():
    steps = deid.explain(
        build_plan(["retain-safe-private"]),
        pydicom.dcmread(io.BytesIO(_planted())),
        KEY,
    )
    why = {s.path: s.source for s in steps}
    assert "on the safe-private list" in why["(7053,1000)"]
    assert "not on the safe-private list" in why["(7053,1001)"]
    assert "listed as CS, read as LO" in why["(0019,100D)"]
    assert MARKER not in repr(steps)


@pytest.mark.parametrize(
    ("vr", "value", "ok"),
    [
        ("CS", b"ORIGINAL\\PRIMARY ", True),
        ("CS", b"Smith, free text", False),
        ("CS", "AXIAL", True),
        ("LO", b"x" * 65, False),
        ("LO", b"Codec 1.0\0", True),
        ("IS", b"12a ", False),
        ("DS", MultiValue(str, ["1.5", "2"]), True),
        ("UI", b"1.2.840.10008\0", True),
        ("UI", b"not a uid", False),
        ("FL", b"\0\0\0", False),
        ("FL", b"\0" * 8, True),
        ("FD", 0.5, True),
        ("OB", b"anything at all", True),
        ("CS", None, True),
    ],
)
def test_a_value_fits_its_listed_vr(vr, value, ok):
    assert fits(vr, SimpleNamespace(value=value)) is ok


def test_deid_then_verify_with_the_option(tmp_path, offline_cli):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.dcm").write_bytes(_planted())
    (src / "b.dcm").write_bytes(_planted(implicit=True))
    (src / "c.dcm").write_bytes(to_bytes(_declaring("MIXED", safe=[0x11])))
    out = tmp_path / "out"
    option = ["--option", "retain-safe-private"]
    for args in (
        ["deid", str(src), "--out", str(out), *option],
        ["verify", "--original", str(src), "--deidentified", str(out), *option],
    ):
        p = offline_cli(*args)
    assert "3 files scanned, 0 leaks" in p.stdout
    paths = list(out.rglob("*.dcm"))
    assert not any(MARKER.encode() in path.read_bytes() for path in paths)
    copies = [pydicom.dcmread(path) for path in paths]
    assert sorted(int(c.InstanceNumber) for c in copies) == [1, 2, 3]
    for copy in copies:
        if copy.InstanceNumber == 3:
            assert {int(t) for t in _private(copy)} == {0x00330010, 0x00331011}
        else:
            assert copy[0x70531000].value == "1.5"
            assert 0x70531001 not in copy


ACME = "ACME IMAGING 1.1"  # on no list: only the object's own declaration keeps its elements


def _declaring(
    status: str,
    *,
    safe: list[int] | None = None,
    group: int = 0x0033,
    actions: dict[str, list[int]] | None = None,
) -> Dataset:
    """An object with ACME's block (0033,1010-1013) described as ``status``.

    ``actions``: its Deidentification Action Sequence, elements (low bytes) by action code.
    """
    ds = make_instance(1, 1, 1, 3, marker=MARKER)
    block = ds.private_block(0x0033, ACME, create=True)
    block.add_new(0x10, "DS", "0.75")
    block.add_new(0x11, "LO", "KERNEL B30F")
    block.add_new(0x12, "LO", "free text")
    block.add_new(0x13, "UI", ds.SeriesInstanceUID)
    described = Dataset()
    described.PrivateGroupReference = group
    described.PrivateCreatorReference = ACME
    described.BlockIdentifyingInformationStatus = status
    if safe is not None:
        described.NonidentifyingPrivateElements = safe
    if actions is not None:
        entries = []
        for code, elements in actions.items():
            entry = Dataset()
            entry.IdentifyingPrivateElements = elements
            entry.DeidentificationAction = code
            entries.append(entry)
        described.DeidentificationActionSequence = entries
    ds.PrivateDataElementCharacteristicsSequence = [described]
    return ds


def _declared_out(ds: Dataset, options: tuple[str, ...] = ("retain-safe-private",)) -> Dataset:
    data = to_bytes(ds)
    return deid.apply(build_plan(list(options)), pydicom.dcmread(io.BytesIO(data)), KEY).ds


def test_a_block_the_object_declares_safe_is_kept():
    out = _declared_out(_declaring("SAFE"))
    kept = _private(out)
    assert kept[0x00331010] == "0.75"
    assert kept[0x00331011] == "KERNEL B30F"
    assert kept[0x00331012] == "free text"
    assert kept[0x00331013] == out.SeriesInstanceUID  # a UID, replaced as the public one
    assert kept[0x00330010] == ACME
    assert not _private(_declared_out(_declaring("SAFE"), ()))  # only under the option


def test_a_mixed_block_keeps_only_the_elements_declared_safe():
    kept = _private(_declared_out(_declaring("MIXED", safe=[0x10, 0x11])))
    assert kept[0x00331010] == "0.75"
    assert kept[0x00331011] == "KERNEL B30F"
    assert 0x00331012 not in kept
    assert 0x00331013 not in kept
    one = _private(_declared_out(_declaring("MIXED", safe=[0x11])))  # a single value
    assert set(one) == {0x00330010, 0x00331011}


def test_elements_a_safe_block_declares_identifying_get_the_action_it_gives():
    ds = _declaring("SAFE", actions={"D": [0x11], "Z": [0x12], "U": [0x13]})
    ds.private_block(0x0033, ACME).add_new(0x14, "LO", f"{MARKER} removed")
    extra = Dataset()
    extra.IdentifyingPrivateElements = 0x14  # a single value
    extra.DeidentificationAction = "X"
    ds.PrivateDataElementCharacteristicsSequence[0].DeidentificationActionSequence.append(extra)
    out = _declared_out(ds)
    kept = _private(out)
    assert kept[0x00331010] == "0.75"  # declared safe, not identifying: as read
    assert kept[0x00331011] == "ANONYMIZED"  # D: a dummy of its VR
    assert kept[0x00331012] in ("", None)  # Z: there, empty
    assert 0x00331012 in out
    assert kept[0x00331013] == out.SeriesInstanceUID  # U: the same pseudonym as the public UID
    assert 0x00331014 not in out  # X
    assert MARKER not in to_bytes(out).decode("latin-1")


def test_a_declared_action_outranks_the_declaration_of_the_element_as_safe():
    ds = _declaring("MIXED", safe=[0x10, 0x11], actions={"Z": [0x11]})
    kept = _private(_declared_out(ds))
    assert kept[0x00331010] == "0.75"
    assert kept[0x00331011] in ("", None)
    assert set(kept) == {0x00330010, 0x00331010, 0x00331011}


@pytest.mark.parametrize(
    ("actions", "options", "expected"),
    [
        ({"Q": [0x11]}, (), None),  # no action of PS3.3's: removed
        ({"U": [0x11]}, (), None),  # U of a text: removed
        ({"U": [0x13]}, ("retain-uids",), "kept"),  # U under Retain UIDs: as read
        ({"D": [0x11]}, None, None),  # without Retain Safe Private: every private removed
    ],
)
def test_declared_actions_that_cannot_apply(actions, options, expected):
    ds = _declaring("SAFE", actions=actions)
    original = ds.private_block(0x0033, ACME)[0x13].value
    tag = 0x00331000 | actions[next(iter(actions))][0]
    chosen = ("retain-safe-private", *options) if options is not None else ()
    out = _declared_out(ds, chosen)
    if expected is None:
        assert tag not in out
    else:
        assert out[tag].value == original


def test_a_damaged_action_sequence_makes_the_declaration_void():
    """What it names identifying cannot be told: nothing of the block is kept."""
    ds = _declaring("SAFE", actions={"D": [0x11]})
    entry = ds.PrivateDataElementCharacteristicsSequence[0].DeidentificationActionSequence[0]
    entry.add_new(0x00080306, "LO", "not numbers")  # Identifying Private Elements as text
    assert not _private(_declared_out(ds))


@pytest.mark.parametrize(
    ("status", "group"),
    [
        ("UNSAFE", 0x0033),
        ("MIXED", 0x0033),  # no element named safe
        ("SAFE", 0x0035),  # another block's declaration
        ("ALL", 0x0033),  # no defined term
    ],
)
def test_no_declaration_keeps_nothing(status, group):
    assert not _private(_declared_out(_declaring(status, group=group)))


def test_a_declaration_inside_an_item_describes_nothing_outside_it():
    ds = _declaring("SAFE")
    described = ds.PrivateDataElementCharacteristicsSequence
    del ds.PrivateDataElementCharacteristicsSequence
    item = Dataset()
    item.PrivateDataElementCharacteristicsSequence = described
    ds.ReferencedImageSequence = [item]
    assert not _private(_declared_out(ds))


def test_a_declared_block_holding_the_patients_name_is_refused_as_a_leak(tmp_path, offline_cli):
    ds = _declaring("SAFE")
    ds.private_block(0x0033, ACME)[0x12].value = str(ds.PatientName)  # a device's own copy
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.dcm").write_bytes(to_bytes(ds))
    out = tmp_path / "out"
    p = offline_cli("deid", str(src), "--out", str(out), "--option", "retain-safe-private", check=1)
    assert "leak_detected" in p.stderr
    assert MARKER not in p.stdout + p.stderr
    assert not list(out.rglob("*.dcm"))
