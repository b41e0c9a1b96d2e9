"""scripts/fuzz.py runs a seeded stream end to end, and reports what it is there to find."""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from indexer import work
from indexer.deid import actions, build_plan, profile, rawvalue, verify
from indexer.errors import DeidError, SourceError
from indexer.records import IndexRecord
from indexer.store.files import LocalStore
from tests.builders import in_transfer_syntax, make_instance, to_bytes, with_element
from tests.conftest import load_script
from tests.deid import kitchen_sink
from tests.fuzzing import NAMES, damaged, heads, planted, recoded

ROOT = Path(__file__).resolve().parent.parent
fuzz = load_script("fuzz")


def test_a_seeded_stream_is_judged_object_by_object():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--objects", "80", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "seed 7, 80 objects (both):"
    counts = {line.split(None, 1)[1]: int(line.split()[0]) for line in lines[1:-1]}
    assert sum(counts.values()) == 80
    assert counts.get("indexed", 0) > 0  # damage to values leaves most objects whole
    assert {name for name in counts if not name.startswith("indexed")}  # refusals
    assert lines[-1] == "0 finding(s)"


def test_the_same_seed_gives_the_same_stream_and_keys():
    """The keys too: dates move by the same days, and a run's refusals are the same."""
    first = fuzz.run(40, 11, "both")
    again = fuzz.run(40, 11, "both")
    assert (first.outcomes, first.key_id) == (again.outcomes, again.key_id)
    other = fuzz.run(40, 12, "both")
    assert first.outcomes != other.outcomes
    assert first.key_id != other.key_id
    assert fuzz.run_keys(11).pseudonym == fuzz.run_keys(11).pseudonym


@pytest.mark.parametrize(
    ("encoding", "ts"),
    [
        ("explicit", ExplicitVRLittleEndian),
        ("implicit", ImplicitVRLittleEndian),
        ("big", ExplicitVRBigEndian),
    ],
)
def test_the_values_mutator_plants_text_where_no_value_holds_it(encoding, ts):
    """Each object it makes reads whole, and holds the marker in a date, time, age, number
    string or UID (implicit VR: or a binary number), at any depth."""
    base = in_transfer_syntax(kitchen_sink.build()[0], ts)
    rng = random.Random(5)  # noqa: S311 - a reproducible stream of test inputs
    held = set()
    for _ in range(30):
        data = planted(rng, base, b"QZMK9", encoding=encoding)
        assert fuzz.reads_whole(data)
        ds = pydicom.dcmread(io.BytesIO(data))
        with warnings.catch_warnings():  # an implicit VR "1.2.3 QZMK9" read as a UID warns
            warnings.simplefilter("ignore")
            where = {vr for _, vr in fuzz._holders(ds, ["QZMK9"], unreadable=False)}
        assert where <= fuzz.VALUE_VRS
        assert where or (encoding == "implicit" and b"QZMK9" in data)  # (numbers read as such)
        held |= where
    assert {"DA", "DS", "UI"} <= held


def test_the_values_mutator_finds_a_value_kept_holding_text(monkeypatch):
    """Its objects are all indexed with no marker in their copies; with the checks that
    replace such values turned off, it finds them."""
    report = fuzz.run(30, 2, "values", options=("retain-uids",))
    assert (report.outcomes, report.findings) == ({"indexed": 30}, [])
    monkeypatch.setattr(profile, "not_of_vr", lambda *_: False)
    found = fuzz.run(30, 2, "values", options=("retain-uids",)).findings
    told = {finding for _, finding in found}
    assert "a marker kept in a UI value (no such value holds text)" in told
    assert "a marker kept in a DS value (no such value holds text)" in told


@pytest.mark.parametrize(
    ("encoding", "ts"),
    [
        ("explicit", ExplicitVRLittleEndian),
        ("implicit", ImplicitVRLittleEndian),
        ("big", ExplicitVRBigEndian),
    ],
)
def test_the_charsets_mutator_writes_texts_a_reader_decodes_otherwise(encoding, ts):
    """Each object it makes reads whole. Some name a character set of ``NAMES`` and hold the
    patient's name in it in another text too (in any case); some a name with the marker split by
    escape sequences, which a reader takes out of the texts again (pydicom those it knows,
    in a set the object names)."""
    base = in_transfer_syntax(kitchen_sink.build()[0], ts)
    rng = random.Random(5)  # noqa: S311 - a reproducible stream of test inputs
    split = named = 0
    for _ in range(30):
        data = recoded(rng, base, b"QZMK9", encoding=encoding)
        assert fuzz.reads_whole(data)
        with warnings.catch_warnings():  # (a set the object does not name: pydicom warns)
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
            texts = [str(e.value) for e in ds.iterall() if e.VR in rawvalue.CHARSET_VRS]
            charset = ds.get("SpecificCharacterSet") or ""
            charset = charset if isinstance(charset, str) else "\\".join(charset)
        texts = [rawvalue.ESCAPE_SEQUENCE.sub("", text).lower() for text in texts]
        split += any("qzmk9" in text for text in texts) and b"qzmk9" not in data.lower()
        name = str(ds.PatientName)
        named += (charset, name) in NAMES and sum(name.lower() in text for text in texts) > 1
    assert split
    assert named


def test_the_charsets_mutator_finds_a_name_the_ingest_searched_for_in_bytes_only(monkeypatch):
    """Its objects are indexed or refused with no finding; with the ingest's check of kept
    texts that a reader decodes otherwise turned off (searched as bytes only), `verify`
    finds names the ingest let through."""
    report = fuzz.run(5, 8, "charsets")
    assert report.findings == []
    assert report.outcomes["leak_detected"] == 2
    monkeypatch.setattr(verify, "_read_otherwise", lambda *_: False)
    found = fuzz.run(5, 8, "charsets").findings
    assert [i for i, _ in found] == [3, 4]
    assert all(
        re.fullmatch(r"verify finds \d leak\(s\) the ingest let through", f) for _, f in found
    )


def test_the_plan_takes_the_options_given(monkeypatch, capsys):
    """Dates shifted, values kept: paths the basic profile never takes."""
    plans = []

    def recorded(options, rules=None):
        plans.append(options)
        return build_plan(options, rules=rules)

    monkeypatch.setattr(fuzz, "build_plan", recorded)
    argv = ["--objects", "20", "--seed", "3", "--mutator", "structured"]
    code = fuzz.main([*argv, "--option", "retain-long-modified-dates", "--option", "rtn_uids"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "seed 3, 20 objects (structured; retain-long-modified-dates; rtn_uids):"
    assert plans == [("retain-long-modified-dates", "rtn_uids")]
    with pytest.raises(SystemExit) as refused:
        fuzz.main([*argv, "--option", "retain-everything"])
    assert refused.value.code == 2
    assert "unknown de-identification option 'retain-everything'" in capsys.readouterr().err


def test_the_plan_takes_the_site_rules_given(monkeypatch, capsys, tmp_path):
    """Keyed methods (dateshift, perturb, substitute) run as an ingest with the file runs
    them; a file the ingest would refuse is refused (exit 2), saying why."""
    plans = []

    def recorded(options, rules=None):
        plans.append(rules)
        return build_plan(options, rules=rules)

    monkeypatch.setattr(fuzz, "build_plan", recorded)
    rules = tmp_path / "site.yaml"
    rules.write_text(
        "version: 1\n"
        "rules:\n"
        "  - {select: {vr: DA}, method: dateshift}\n"
        "  - {select: {keyword: SliceThickness}, method: perturb, span: 0.5}\n"
        "  - {select: {keyword: Manufacturer}, method: substitute, value: ACME}\n"
    )
    argv = ["--objects", "20", "--seed", "3", "--mutator", "structured", "--rules", str(rules)]
    assert fuzz.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "seed 3, 20 objects (structured; rules site.yaml):"
    (ruleset,) = plans
    assert [r.method for r in ruleset.rules] == ["dateshift", "perturb", "substitute"]
    rules.write_text(
        "version: 1\nrules:\n  - {select: {keyword: Rows}, method: substitute, value: x}\n"
    )
    with pytest.raises(SystemExit) as refused:
        fuzz.main(argv)
    assert refused.value.code == 2
    assert "the substitute value 'x' is no VR US value" in capsys.readouterr().err


_VERIFY = SimpleNamespace(
    identifying_values=verify.identifying_values, find_leaks=verify.find_leaks
)
fuzz.verify = _VERIFY


def _escaping(src, ctx):
    raise ZeroDivisionError


def _marked(src, ctx):
    raise SourceError(f"cannot read {fuzz.MARK}", reason="unreadable")


def _one_leak(values, out, *, generated):
    return ["a leak"]


def _unreadable(plan, ds):
    raise SourceError("unreadable DICOM", reason="unreadable")


@pytest.mark.parametrize(
    ("target", "name", "replacement", "finding"),
    [
        (work, "prepare", _escaping, "ZeroDivisionError escaped"),
        (work, "prepare", _marked, "a marker in its message"),
        # the script's own verify, not the ingest's leak check
        (_VERIFY, "find_leaks", _one_leak, "verify finds 1 leak(s)"),
        (_VERIFY, "identifying_values", _unreadable, "verify cannot read what the ingest indexed"),
    ],
)
def test_what_it_is_there_to_find_is_a_finding_and_saved(
    monkeypatch, tmp_path, capsys, target, name, replacement, finding
):
    monkeypatch.setattr(target, name, replacement)
    code = fuzz.main(
        ["--objects", "3", "--seed", "1", "--mutator", "structured", "--save", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 1
    found = [line for line in out.splitlines() if line.startswith("finding: ")]
    assert found
    assert all(finding in line for line in found)
    assert len(list(tmp_path.glob("seed1-*.dcm"))) == len(found)


def _out_of_the_calendar(value, vr, days):
    raise OverflowError("date value out of range")  # as a shift before the year 1 did


def test_an_object_refused_for_a_value_pydicom_reads_is_a_finding(monkeypatch, capsys):
    """The engine met a value it did not foresee and lost a whole object that pydicom reads
    (a date shifted out of the calendar failed its object so): the fuzz told it apart from
    damage only by the reason, which it expects."""
    monkeypatch.setattr(actions, "shift_date", _out_of_the_calendar)
    argv = ["--objects", "12", "--seed", "5", "--mutator", "structured"]
    code = fuzz.main([*argv, "--option", "retain-long-modified-dates"])
    found = [line for line in capsys.readouterr().out.splitlines() if line.startswith("finding")]
    assert code == 1
    assert found
    assert all(
        "refused, though pydicom reads every element: cannot de-identify" in line for line in found
    )
    monkeypatch.undo()
    assert fuzz.main([*argv, "--option", "retain-long-modified-dates"]) == 0


def test_a_refusal_of_what_pydicom_cannot_read_is_no_finding():
    whole = to_bytes(make_instance())
    # a length no FL value has: pydicom cannot give its value
    broken = with_element(whole, 0x00200012, b"FL", b"\x01\x02\x03", before=0x00200013)
    deid_error = DeidError("cannot de-identify the object: ...", reason="invalid_element")
    read_error = SourceError("invalid DICOM: ...", reason="invalid_element")
    told = "refused, though pydicom reads every element: cannot de-identify the object: ..."
    assert fuzz.refusal_finding(deid_error, whole, []) == told
    assert fuzz.refusal_finding(deid_error, broken, []) == ""
    assert fuzz.refusal_finding(read_error, whole, []) == ""  # the ingest's own read: stricter
    assert fuzz.refusal_finding(DeidError("...", reason="rule_mismatch"), whole, []) == ""
    assert fuzz.reads_whole(whole)
    assert not fuzz.reads_whole(broken)


@pytest.mark.parametrize(
    ("vr", "sound", "text"),
    [
        ("DS", b"5.00000", b"5 QZMK9"),
        ("UI", b"1.2.840.10008.5.1.4.1.1.4", b"1.2.840.10008.5.1.4 QZMK9"),
    ],
)
def test_a_marker_kept_in_a_date_time_age_number_or_uid_is_a_finding(
    vr, sound, text, monkeypatch, tmp_path
):
    """No kept date, time, age, number string or UID holds text (``profile.HOLDS_TEXT``,
    ``UID_HOLDS_TEXT``): a marker in one, found by its bytes, is a finding. An odd number
    pydicom cannot read holds none."""
    ds = make_instance(marker=fuzz.MARK)
    ds.SliceThickness = "5.00000"
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # a class UID: kept
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.SourceImageSequence = [item]
    data = to_bytes(ds)
    assert data.count(sound) == 1
    data = data.replace(sound, text)
    store = LocalStore(tmp_path)
    ctx = work.RunContext(build_plan(()), fuzz.run_keys(1), store, "DI", 30, 1)
    assert fuzz.judge(ctx, 0, data, ["QZMK9"]) == ("indexed", "")  # replaced now
    monkeypatch.setattr(profile, "not_of_vr", lambda *_: False)  # as before it
    told = f"a marker kept in a {vr} value (no such value holds text)"
    assert fuzz.judge(ctx, 1, data, ["QZMK9"]) == ("indexed", told)
    store.close()
    odd = pydicom.dcmread(io.BytesIO(with_element(data, 0x00200012, b"IS", b"1e400 ", 0x00200013)))
    assert fuzz._in_a_value(odd, ["PHIMARK0"]) == ""
    assert fuzz._in_a_value(odd, ["QZMK9"]) == vr


def test_a_copy_without_the_originals_pixel_data_is_a_finding(monkeypatch, tmp_path):
    """A deflated object's copy went without its pixel data (read up to it, as an object
    whose pixel data lies in place is), indexed as sound: nothing the fuzz judged said so."""
    data = in_transfer_syntax(make_instance(rows=8, columns=8), DeflatedExplicitVRLittleEndian)
    store = LocalStore(tmp_path)
    ctx = work.RunContext(build_plan(()), fuzz.run_keys(1), store, "DI", 30, 1)
    assert fuzz.judge(ctx, 0, data, []) == ("indexed", "")
    monkeypatch.setattr(work, "_deflated", lambda _ds: False)  # as before the fix
    told = "the copy holds no pixel data, and the original does"
    assert fuzz.judge(ctx, 1, data, []) == ("indexed", told)
    store.close()


def _record(series_number=1, instance_number=2, header='{"00180050":{"vr":"DS","Value":[1.5]}}'):
    instance = {"instance_number": instance_number, "rows": 16, "header": header}
    return IndexRecord({}, {}, {"series_number": series_number}, instance)


@pytest.mark.parametrize(
    ("record", "told"),
    [
        (_record(), ""),
        (_record(series_number=-(2**31), instance_number=2**31 - 1), ""),
        (_record(series_number=-(2**31) - 1), "series_number past PostgreSQL's integer"),
        (_record(instance_number=2**31), "instance_number past PostgreSQL's integer"),
        (_record(header='{"00180050":{"vr":"DS","Value":[NaN]}}'), "a header that is no JSON"),
        (
            _record(header='{"00189087":{"vr":"FD","Value":[-Infinity]}}'),
            "a header that is no JSON",
        ),
        (_record(header='{"0008040D":{"vr":"UV","Value":[9223372036854775807]}}'), ""),
        (
            _record(header='{"0008040D":{"vr":"UV","Value":[9223372036854775808]}}'),
            "a header no MongoDB document holds",
        ),
    ],
)
def test_index_rows_the_stores_would_refuse_are_told(record, told):
    """Such a row failed its batch in PostgreSQL (or MongoDB), and so the run: a finding."""
    assert fuzz.unstorable(record) == told


def _with_frame(jpeg: bytes) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    return ds


_SCAN = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"  # a start of scan, its data after


def test_a_marker_left_in_a_copy_is_told_by_where_it_lies():
    """In a frame header that decoders read (kept; searched for the object's values only),
    in a frame's image data, or else under a kept attribute."""
    mark = fuzz.MARK.encode()
    kept = b"\xff\xe0\x00\x10JFIF\x00" + mark + b"\x00\x00"  # an APP0 that decoders read
    assert len(kept) == 2 + 0x10
    where = {
        "in a kept frame header": _with_frame(b"\xff\xd8" + kept + _SCAN + b"\x12" * 9),
        "in image data": _with_frame(b"\xff\xd8" + _SCAN + mark + b"\xff\xd9"),
        "under a kept attribute": _with_frame(b"\xff\xd8" + _SCAN + b"\x12\xff\xd9"),
    }
    for told, ds in where.items():
        assert fuzz._marked_where(ds, [fuzz.MARK]) == told


def test_a_marker_in_image_data_is_told_apart_where_it_is_the_objects_own_value():
    """The video bases' texts hold their patient's name: one left in image data, which
    neither check searched, is counted apart from a marker that is no value of the object
    (today's leaks past damaged items and JPEG headers were such)."""
    own = f"Doe^{fuzz.MARK}5^Q"
    values = {own: "(0010,0010)"}
    plan = build_plan(())
    named = _with_frame(b"\xff\xd8" + _SCAN + own.encode() + b"\xff\xd9")
    assert fuzz._where(named, [fuzz.MARK], plan, values) == (
        "in image data, in one of the object's identifying values"
    )
    other = _with_frame(b"\xff\xd8" + _SCAN + fuzz.MARK.encode() + b"\xff\xd9")
    assert fuzz._where(other, [fuzz.MARK], plan, values) == "in image data"
    assert all(fuzz._NAME in base for base in fuzz.bases()[0][fuzz.VIDEO][:3])


def test_a_marker_an_option_keeps_is_told_from_one_the_profile_keeps():
    """A marker under the Institution Name, which retain-institution-identity keeps (the
    bases plant one in each), is by design; one under the Manufacturer, which the basic
    profile keeps too, is what a damaged tag moved there or the engine left: told apart. An
    implicit VR copy's elements are judged by their VRs."""
    plan = build_plan(["retain-institution-identity"])
    ds = make_instance(marker=fuzz.MARK)
    out = pydicom.Dataset()
    out.InstitutionName = ds.InstitutionName
    assert fuzz._kept_by_options(out, [fuzz.MARK], plan)
    assert not fuzz._kept_by_options(out, [fuzz.MARK], build_plan(()))
    out.Manufacturer = f"ACME {fuzz.MARK}"
    assert not fuzz._kept_by_options(out, [fuzz.MARK], plan)
    del out.Manufacturer
    out.file_meta = pydicom.dataset.FileMetaDataset()
    out.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    out.save_as(buf, implicit_vr=True, little_endian=True)
    implicit = pydicom.dcmread(io.BytesIO(buf.getvalue()), force=True)
    assert fuzz._kept_by_options(implicit, [fuzz.MARK], plan)


def _elements(ds) -> int:
    return sum(1 + sum(_elements(item) for item in e.value) if e.VR == "SQ" else 1 for e in ds)


@pytest.mark.parametrize(
    ("encoding", "ts"),
    [
        ("explicit", ExplicitVRLittleEndian),
        ("implicit", ImplicitVRLittleEndian),
        ("big", ExplicitVRBigEndian),
    ],
)
def test_the_structured_mutator_finds_every_element_pydicom_reads(encoding, ts):
    """Sequences walked into, nested ones too: each element of the kitchen sink is one the
    mutator may damage, and it damages what it finds."""
    data = in_transfer_syntax(kitchen_sink.build()[0], ts)
    read = pydicom.dcmread(io.BytesIO(data))
    found = heads(data, encoding=encoding)
    assert len(found) == _elements(read) + len(read.file_meta)
    in_data_set = found[len(read.file_meta) :]
    assert all(h[3] == (encoding != "implicit") for h in in_data_set)  # a VR written
    assert all(h[4] == (">" if encoding == "big" else "<") for h in in_data_set)
    rng = random.Random(3)  # noqa: S311 - a reproducible stream of test inputs
    assert all(damaged(rng, data, [0x00100010], encoding=encoding) != data for _ in range(20))
