"""The test files pydicom ships: vendors' real headers (GE, Toshiba, Siemens), odd encodings.

Each is indexed, or refused for a reason that is right for it; none ends in an error no
check foresaw, and every copy written reads back whole, its pixel data as it came.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from indexer import keys, work
from indexer.deid import build_plan
from indexer.errors import DeidError, SourceError
from indexer.records import SourceFile
from indexer.store.files import LocalStore

FILES = Path(pydicom.data.__file__).parent / "test_files"
# once refused (leak_detected): the Institution Name "TOSHIBA" is inside the kept
# Manufacturer "TOSHIBA_MEC"
TOSHIBA = {f"MR_small{s}.dcm" for s in ("", "_RLE", "_bigendian", "_expb", "_implicit")}
TOSHIBA |= {f"MR_small{s}.dcm" for s in ("_jp2klossless", "_jpeg_ls_lossless", "_padded")}


@pytest.fixture
def ctx(tmp_path: Path):
    work.configure_pydicom()
    store = LocalStore(tmp_path / "out")
    yield work.RunContext(build_plan(burned_in="allow"), keys.generate(), store, "DI", 30, 1)
    store.close()


def _outcome(ctx: work.RunContext, path: Path) -> str:
    data = path.read_bytes()
    error = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            work.process(SourceFile(path.name, str(path), len(data), lambda: data), ctx)
    except (SourceError, DeidError) as e:
        error = e
    return "indexed" if error is None else str(getattr(error, "reason", error.code))


def test_every_shipped_file_is_indexed_or_rightly_refused(ctx, tmp_path):
    outcomes = {p: _outcome(ctx, p) for p in sorted(FILES.rglob("*")) if p.is_file()}
    counts = Counter(outcomes.values())
    assert counts["unexpected_error"] == 0
    assert counts["indexed"] >= 100  # 118 with pydicom 3.0
    # a few that once failed: a private SL pair, implicit VR under an explicit syntax, no
    # file meta, a GE series whose private product id is the model name's first 16 letters
    for name in ("CT_small.dcm", "JPEG-lossy.dcm", "SC_rgb_jpeg.dcm", "ExplVR_LitEndNoMeta.dcm"):
        assert outcomes[FILES / name] == "indexed", name
    ge = [p for p in outcomes if p.parent.name == "MR1" and "dicomdirtests" in p.parts]
    assert ge
    assert all(outcomes[p] == "indexed" for p in ge)
    # a patient named "Test^S R", and a code of the coding scheme "TEST" kept: a name is
    # searched for in any case, as "HEAD^JOHN" is refused beside the Body Part "HEAD"
    refused = {p.name for p, outcome in outcomes.items() if outcome == "leak_detected"}
    assert refused == {"test-SR.dcm"}
    # variants of one object under one SOP Instance UID: the first indexed, the rest conflict;
    # but "_padded" (128 bytes of zeros past its image, cut off) is the first's copy again
    indexed = {name for name in TOSHIBA if outcomes[FILES / name] == "indexed"}
    assert indexed == {"MR_small.dcm", "MR_small_padded.dcm"}
    assert {outcomes[FILES / name] for name in TOSHIBA - indexed} == {"duplicate_sop_conflict"}
    copies = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(copies) >= 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for copy in copies:
            out = pydicom.dcmread(copy)
            assert sum(1 for _ in out.iterall()) > 0  # every element reads back
            assert out.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize(
    "name", ["SC_rgb_jpeg.dcm", "ExplVR_LitEndNoMeta.dcm", "CT_small.dcm", "image_dfl.dcm"]
)
def test_copies_carry_the_pixel_data_as_it_came(ctx, tmp_path, name):
    """Implicit VR under an explicit transfer syntax, no file meta (an RT plan, no pixels),
    a plain CT, a deflated image: each copy in its transfer syntax (explicit VR little endian
    where none was given), pixel data untouched. (The deflated image's copy went without its
    pixel data: read up to it, as an object whose pixel data lies in place is.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the implicit VR it found
        original = pydicom.dcmread(get_testdata_file(name), force=True)
    assert _outcome(ctx, Path(get_testdata_file(name))) == "indexed"
    (copy,) = (tmp_path / "out").rglob("*.dcm")
    out = pydicom.dcmread(copy)
    assert out.get("PixelData") == original.get("PixelData")
    assert out.SOPInstanceUID != original.SOPInstanceUID
    assert out.file_meta.TransferSyntaxUID == (
        original.file_meta.get("TransferSyntaxUID") or pydicom.uid.ExplicitVRLittleEndian
    )
