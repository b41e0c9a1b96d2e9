"""Retain Safe Private: PS3.15 Table E.3.10-1 as shipped, by creator, group, element and VR."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from importlib import resources
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ImplicitVRLittleEndian

from indexer import deid
from indexer.deid import build_plan
from indexer.deid.profile import fits
from indexer.deid.table import load_safe_private
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


def test_deid_then_verify_with_the_option(tmp_path, key_file):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.dcm").write_bytes(_planted())
    (src / "b.dcm").write_bytes(_planted(implicit=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_INDEX_")}
    env.update(DICOM_INDEX_KEY_FILE=str(key_file), CI="1")
    out = tmp_path / "out"
    option = ["--option", "retain-safe-private"]
    for args in (
        ["deid", str(src), "--out", str(out), *option],
        ["verify", "--original", str(src), "--deidentified", str(out), *option],
    ):
        p = subprocess.run(
            [sys.executable, "-m", "indexer.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert p.returncode == 0, p.stdout + p.stderr
    assert "2 files scanned, 0 leaks" in p.stdout
    copies = sorted(out.rglob("*.dcm"))
    assert len(copies) == 2
    for copy in copies:
        data = copy.read_bytes()
        assert MARKER.encode() not in data
        assert PET.encode() in data
        ds = pydicom.dcmread(copy)
        assert ds[0x70531000].value == "1.5"
        assert 0x70531001 not in ds
