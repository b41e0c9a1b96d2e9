"""`dicom-index deid`, `deid --what-if`, `verify`, and the leak check inside ingest (#3)."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import zipfile

import pydicom
import pytest
from sqlalchemy import text

from indexer import leakscan, pipeline
from indexer.deid import build_plan, pseudonym
from indexer.keys import from_master, read_key_file, write_key_file
from tests.builders import SampleShape, dicomdir, make_instance, malformed, to_bytes, write_archive
from tests.conftest import Cli

MARKER = "PHIMARK"


def test_standalone_deid_then_verify(tmp_path, offline_cli):
    archive = tmp_path / "in"
    write_archive(archive, SampleShape(2, 1, 1, 2), marker=MARKER)
    (archive / "readme.txt").write_text("not dicom")
    us = make_instance(
        9, 1, 1, 1, marker=MARKER, Modality="US", SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1"
    )
    (archive / "us.dcm").write_bytes(to_bytes(us))
    p = offline_cli("deid", str(archive), "--out", str(tmp_path / "out"), check=1)
    assert "4 de-identified, 1 skipped, 1 failed" in p.stdout
    assert "burned_in_annotation" in p.stderr
    assert MARKER not in p.stdout + p.stderr
    outs = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(outs) == 4
    for path in outs:
        assert MARKER.encode() not in path.read_bytes()
    p = offline_cli("verify", "--original", str(archive), "--deidentified", str(tmp_path / "out"))
    assert "4 files scanned, 0 leaks" in p.stdout
    # the originals themselves are all leak
    p = offline_cli("verify", "--original", str(archive), "--deidentified", str(archive), check=1)
    assert "leak:" in p.stdout
    assert MARKER not in p.stdout  # paths of originals are not printed, values never


def test_what_if_explains_without_values(tmp_path, offline_cli):
    f = tmp_path / "x.dcm"
    f.write_bytes(to_bytes(make_instance(marker=MARKER)))
    p = offline_cli("deid", "--what-if", str(f))
    assert MARKER not in p.stdout
    assert "PatientName" in p.stdout
    assert "keyed pseudonym" in p.stdout
    assert "Type 3 in the IOD" in p.stdout
    p = offline_cli("deid", "--what-if", "--option", "RetainUIDs", str(f))
    assert "option rtn_uids" in p.stdout


def test_what_if_read_through_a_closed_pipe_ends_as_sigpipe_would(tmp_path, offline_cli):
    """`deid --what-if x.dcm | head -0`: the table's writer meets a pipe nobody reads. rich
    ended such a command with exit 1 (a failure); it ends with 141, as any command does."""
    f = tmp_path / "x.dcm"
    f.write_bytes(to_bytes(make_instance(marker=MARKER)))
    read, write = os.pipe()
    os.close(read)  # nobody reads
    p = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "deid", "--what-if", str(f)],
        env=offline_cli.env,
        cwd=tmp_path,
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=300,
    )
    os.close(write)
    assert (p.returncode, p.stderr) == (141, "")


@pytest.mark.parametrize(
    ("name", "make", "said"),
    [
        ("", lambda p: p.mkdir(), "error (config): --what-if explains files: input 1 is a folder"),
        ("", lambda _: None, "error (source): cannot read the file (FileNotFoundError: No such"),
        ("", lambda p: p.write_bytes(b"plain text"), "error (source): not a DICOM file"),
        (
            ".zip",
            lambda p: zipfile.ZipFile(p, "w").close(),
            "error (config): --what-if explains files: input 1 is an archive (extract a member",
        ),
    ],
    ids=["a folder", "no such file", "not DICOM", "an archive"],
)
def test_what_if_names_an_input_it_cannot_explain(tmp_path, offline_cli, name, make, said):
    f = tmp_path / f"Doe {MARKER}{name}"
    make(f)
    p = offline_cli("deid", "--what-if", str(f), check=3)
    assert p.stderr.startswith(said)
    assert MARKER not in p.stdout + p.stderr


def test_ingest_refuses_a_leaking_object_and_takes_options(cli, tmp_path, engine):
    src = tmp_path / "src"
    src.mkdir()
    leaky = make_instance(1, 1, 1, 1, marker=MARKER)
    leaky.Manufacturer = f"Doe^{MARKER}1^Q"  # the name typed into a kept field
    (src / "leaky.dcm").write_bytes(to_bytes(leaky))
    (src / "fine.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 2, marker=MARKER)))
    out = tmp_path / "out"
    p = cli("ingest", str(src), "--out", str(out), "--option", "retain-uids", check=1)
    assert "leak_detected" in p.stdout
    assert len(list(out.rglob("*.dcm"))) == 1  # the leaking copy was never written
    with engine.connect() as c:
        err = c.execute(text("SELECT reason, message FROM dicom_index.file_error")).one()
        uid = c.execute(text("SELECT sop_uid FROM dicom_index.instance")).scalar()
    assert err.reason == "leak_detected"
    assert MARKER not in err.message
    assert "(0010,0010)" in err.message
    assert uid == make_instance(1, 1, 1, 2).SOPInstanceUID  # retain-uids kept it
    copy = pydicom.dcmread(next(out.rglob("*.dcm")))
    assert "113110" in [i.CodeValue for i in copy.DeidentificationMethodCodeSequence]


def test_verify_with_the_key_ignores_a_value_inside_a_pseudonym_by_chance(
    tmp_path, offline_cli, key_file
):
    """A removed value that is six digits of the pseudonym Series Instance UID: `deid` writes
    the copy, and `verify` with the key file does not call it a leak; without the key it
    cannot tell, and errs on the side of a report."""
    ds = make_instance(1, 1, 1, 1)
    pseudo = pseudonym.uid(read_key_file(key_file).pseudonym, ds.SeriesInstanceUID)
    ds.OtherPatientIDs = pseudo[8:14]  # removed by the basic profile
    archive = tmp_path / "in"
    archive.mkdir()
    (archive / "a.dcm").write_bytes(to_bytes(ds))
    offline_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    (copy,) = (tmp_path / "out").rglob("*.dcm")
    assert pseudo[8:14].encode() in copy.read_bytes()
    args = ["verify", "--original", str(archive), "--deidentified", str(tmp_path / "out")]
    assert "1 files scanned, 0 leaks" in offline_cli(*args).stdout
    keyless = {**offline_cli.env, "DICOM_INDEX_KEY_FILE": str(tmp_path / "no-key.json")}
    assert "1 files scanned, 1 leaks" in Cli(keyless, tmp_path, [])(*args, check=1).stdout


def test_verify_pooled_over_many_originals_knows_each_ones_pseudonyms(
    tmp_path, offline_cli, key_file
):
    """As above, among 30 other originals: their pseudonyms, found in one pass over each
    output (``verify.Generated``), still explain the chance value; and a real leak is still
    found among them."""
    archive = tmp_path / "in"
    archive.mkdir()
    for i in range(30):
        (archive / f"{i}.dcm").write_bytes(to_bytes(make_instance(2, 2, i + 1, 1)))
    ds = make_instance(1, 1, 1, 1)
    pseudo = pseudonym.uid(read_key_file(key_file).pseudonym, ds.SeriesInstanceUID)
    ds.OtherPatientIDs = pseudo[8:14]  # removed by the basic profile
    (archive / "a.dcm").write_bytes(to_bytes(ds))
    offline_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    plan, keys = build_plan(), read_key_file(key_file)

    def pooled() -> leakscan.VerifyReport:
        return leakscan.verify_outputs(
            [archive],
            [tmp_path / "out"],
            plan,
            max_member_bytes=1 << 30,
            pseudonyms=leakscan.Pseudonyms(keys, "DI", 3650),
        )

    report = pooled()
    assert (report.scanned, report.leaks) == (31, [])
    (copy,) = [
        p for p in (tmp_path / "out").rglob("*.dcm") if pseudo[8:14].encode() in p.read_bytes()
    ]
    leaky = pydicom.dcmread(copy)
    leaky.InstitutionName = "PHIMARK General"  # a removed value of another original's
    leaky.save_as(copy)
    (archive / "b.dcm").write_bytes(
        to_bytes(make_instance(3, 3, 3, 1, InstitutionName="PHIMARK General"))
    )
    report = pooled()
    assert [(x.source_path, x.found_in) for x in report.leaks] == [("(0008,0080)", "(0008,0080)")]


def test_verify_pooled_keeps_the_strictest_path_of_a_value_two_originals_hold(
    tmp_path, offline_cli
):
    """ "Smithers" is a patient's name in one original, and a private element's value in
    another (a private value is no leak where a kept attribute holds it, as a vendor's copy
    of the Manufacturer). Pooled, the last original's path stood for the value, and the
    name in a copy's Manufacturer went unreported."""
    archive = tmp_path / "in"
    archive.mkdir()
    named = make_instance(1, 1, 1, 1, PatientName="Smithers^Ann", Manufacturer="Alpha")
    private = make_instance(2, 2, 2, 1, Manufacturer="Beta")
    private.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "Smithers")
    (archive / "a.dcm").write_bytes(to_bytes(named))
    (archive / "b.dcm").write_bytes(to_bytes(private))
    offline_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    args = ["verify", "--original", str(archive), "--deidentified", str(tmp_path / "out")]
    assert "2 files scanned, 0 leaks" in offline_cli(*args).stdout
    (copy,) = [
        p for p in (tmp_path / "out").rglob("*.dcm") if pydicom.dcmread(p).Manufacturer == "Alpha"
    ]
    leaky = pydicom.dcmread(copy)
    leaky.Manufacturer = "Smithers"
    leaky.save_as(copy)
    for extra in ([], ["--per-object"]):
        p = offline_cli(*args, *extra, check=1)
        assert "1 leaks" in p.stdout, extra


def test_verify_without_the_key_ignores_a_value_inside_a_dummy_value(tmp_path, offline_cli):
    ds = make_instance(1, 1, 1, 1)
    ds.AnatomicRegionSequence[0].ContentSequence[0].Date = "20230115"  # dummied: 19000101
    ds.StudyTime = "1900"  # 19:00, removed
    archive = tmp_path / "in"
    archive.mkdir()
    (archive / "a.dcm").write_bytes(to_bytes(ds))
    # a fixed key: with a random one, "1900" falls among a pseudonym UID's digits in about
    # one run of fifty, and without the key that is a leak nobody can tell from chance
    fixed = tmp_path / "fixed-key.json"
    write_key_file(fixed, from_master(base64.b64encode(b"k" * 32).decode()))
    fixed_cli = Cli({**offline_cli.env, "DICOM_INDEX_KEY_FILE": str(fixed)}, tmp_path, [])
    fixed_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    (copy,) = (tmp_path / "out").rglob("*.dcm")
    uids = [e.value for e in pydicom.dcmread(copy).iterall() if e.VR == "UI"]
    assert not any("1900" in str(u) for u in uids)  # the case this test is about
    keyless = {**offline_cli.env, "DICOM_INDEX_KEY_FILE": str(tmp_path / "no-key.json")}
    args = ["verify", "--original", str(archive), "--deidentified", str(tmp_path / "out")]
    assert "1 files scanned, 0 leaks" in Cli(keyless, tmp_path, [])(*args).stdout


def test_verify_counts_what_it_could_not_check(tmp_path, offline_cli):
    """An original whose values cannot be read is not searched for: `verify` says so and
    fails, rather than report no leaks it never looked for; a file of no DICOM is skipped."""
    archive = tmp_path / "in"
    archive.mkdir()
    (archive / "good.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1, marker=MARKER)))
    (archive / "bad.dcm").write_bytes(malformed("nul_in_charset", 2, MARKER))
    (archive / "notes.txt").write_text(f"not dicom {MARKER}")
    p = offline_cli("deid", str(archive), "--out", str(tmp_path / "out"), check=1)
    assert "invalid_element" in p.stderr
    (tmp_path / "out" / "junk.dcm").write_bytes(malformed("deep_nesting", 3, MARKER))
    args = ["verify", "--original", str(archive), "--deidentified", str(tmp_path / "out")]
    p = offline_cli(*args, check=1)
    assert "1 files scanned, 0 leaks" in p.stdout
    assert "not checked: 1 original(s) whose values could not be read, 1 output(s)" in p.stdout
    assert MARKER not in p.stdout + p.stderr
    p = offline_cli(*args, "--per-object", check=1)  # each copy with its original
    assert "1 files scanned, 0 leaks" in p.stdout
    assert "not checked: 1 original(s) whose values could not be read, 1 output(s)" in p.stdout
    assert "copy of no original" not in p.stdout
    assert MARKER not in p.stdout + p.stderr


def test_deid_and_verify_walk_trees_deeper_than_the_recursion_limit(
    tmp_path, offline_cli, deep_folder
):
    """Originals and outputs of any depth are read: an original far down is de-identified,
    and the same original dropped far down in the output is found there as a leak."""
    archive, out = tmp_path / "in", tmp_path / "out"
    original = to_bytes(make_instance(1, 1, 1, 1, marker=MARKER))
    archive.mkdir()
    (deep_folder(archive) / "x.dcm").write_bytes(original)
    p = offline_cli("deid", str(archive), "--out", str(out))
    assert "1 de-identified, 0 skipped, 0 failed" in p.stdout
    args = ["verify", "--original", str(archive), "--deidentified", str(out)]
    assert "1 files scanned, 0 leaks" in offline_cli(*args).stdout
    (deep_folder(out) / "planted.dcm").write_bytes(original)
    p = offline_cli(*args, check=1)
    assert "2 files scanned" in p.stdout
    assert "leak:" in p.stdout
    assert MARKER not in p.stdout + p.stderr


def test_verify_per_object_searches_each_copy_for_its_own_original_only(tmp_path, offline_cli):
    """Two unrelated objects: one patient's name is the other's body part. Pooled, `verify`
    finds the name in the other copy; per object it searches each copy for its own
    original's values, and still finds a value leaked into its own copy."""
    archive, others = tmp_path / "in", tmp_path / "others"
    archive.mkdir()
    others.mkdir()
    named = make_instance(1, 1, 1, 1, marker=MARKER, PatientName="KNEE^ANNA")
    knee = make_instance(2, 1, 1, 1, marker=MARKER, BodyPartExamined="KNEE")
    (archive / "a.dcm").write_bytes(to_bytes(named))
    (archive / "a_again.dcm").write_bytes(to_bytes(named))  # one copy, two originals
    (archive / "b.dcm").write_bytes(to_bytes(knee))
    offline_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    args = ["verify", "--original", str(archive), "--deidentified", str(tmp_path / "out")]
    pooled = offline_cli(*args, check=1).stdout
    assert "2 files scanned, 1 leaks" in pooled
    assert "the value of (0010,0010) is in (0018,0015)" in pooled
    p = offline_cli(*args, "--per-object")
    assert "2 files scanned, 0 leaks" in p.stdout  # the one copy of a twice-held object: once
    # a value in its own copy is still a leak; written only because the check was off
    leaky = make_instance(3, 1, 1, 1, marker=MARKER)
    leaky.Manufacturer = f"Doe^{MARKER}3^Q"
    (archive / "c.dcm").write_bytes(to_bytes(leaky))
    us = make_instance(
        4, 1, 1, 1, marker=MARKER, Modality="US", SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1"
    )
    (archive / "us.dcm").write_bytes(to_bytes(us))  # refused (burned-in text): no copy
    (others / "d.dcm").write_bytes(to_bytes(make_instance(5, 1, 1, 1, marker=MARKER)))
    out = str(tmp_path / "out")
    offline_cli("deid", str(archive), str(others), "--out", out, "--no-verify", check=1)
    p = offline_cli(*args, "--per-object", check=1)
    assert "3 files scanned, 2 leaks" in p.stdout  # the name, and the marker it shares
    assert "the value of (0010,0010) is in (0008,0070)" in p.stdout
    assert "the value of (0008,0090) is in (0008,0070)" in p.stdout
    assert "not checked: 1 output(s) that are the copy of no original given" in p.stdout
    assert "1 original(s) have no copy among the outputs" in p.stdout
    assert MARKER not in p.stdout + p.stderr
    # pairing needs the pseudonyms, so the key
    keyless = {**offline_cli.env, "DICOM_INDEX_KEY_FILE": str(tmp_path / "no-key.json")}
    p = Cli(keyless, tmp_path, [])(*args, "--per-object", check=3)
    assert "needs the key file" in p.stderr


def test_a_cds_dicomdir_is_skipped_not_failed(tmp_path, offline_cli):
    """A CD or DVD export holds a DICOMDIR (a directory of its patients, not an object):
    skipped, so the run is clean. `verify` searches for its names too, and searches one
    found among the outputs (pooled: its names are found; per object: it is the copy of
    no original, so not checked)."""
    archive = tmp_path / "cd"
    write_archive(archive, SampleShape(1, 1, 1, 2), marker=MARKER)
    (archive / "DICOMDIR").write_bytes(dicomdir(MARKER))
    p = offline_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    assert "2 de-identified, 1 skipped, 0 failed" in p.stdout
    assert "dicomdir" in p.stdout + p.stderr
    assert MARKER not in p.stdout + p.stderr
    args = ["verify", "--original", str(archive), "--deidentified", str(tmp_path / "out")]
    assert "2 files scanned, 0 leaks" in offline_cli(*args).stdout
    p = offline_cli(*args, "--per-object")
    assert "2 files scanned, 0 leaks" in p.stdout
    assert "1 original(s) have no copy" in p.stdout
    (tmp_path / "out" / "DICOMDIR").write_bytes(dicomdir(MARKER))  # copied along by hand
    p = offline_cli(*args, check=1)
    assert "3 files scanned" in p.stdout
    assert "the value of (0004,1220)[0].(0010,0010) is in" in p.stdout
    p = offline_cli(*args, "--per-object", check=1)
    assert "not checked: 1 output(s) that are the copy of no original" in p.stdout


@pytest.mark.filterwarnings("ignore:Unknown encoding")  # writing the original, in this process
def test_pydicom_warnings_that_quote_a_value_stay_quiet(tmp_path, offline_cli):
    """pydicom warns of an unknown character set whatever its validation mode, quoting the
    value: nothing of it reaches the terminal, in `deid` and in `verify`."""
    archive = tmp_path / "in"
    archive.mkdir()
    ds = make_instance(1, 1, 1, 1, marker=MARKER)
    ds.SpecificCharacterSet = f"{MARKER}CS"  # no character set pydicom knows
    (archive / "odd.dcm").write_bytes(to_bytes(ds))
    p = offline_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    assert "1 de-identified" in p.stdout
    assert MARKER not in p.stdout + p.stderr
    args = ["verify", "--original", str(archive), "--deidentified", str(tmp_path / "out")]
    p = offline_cli(*args)  # a character set is no identifying value: kept
    assert MARKER not in p.stdout + p.stderr


def test_sample_into_a_file_is_a_clear_error(tmp_path, offline_cli):
    (tmp_path / "taken").write_text("a file")
    p = offline_cli("sample", str(tmp_path / "taken"), check=3)
    assert p.stderr == (
        "error (config): cannot write the sample archive there (NotADirectoryError: Not a "
        "directory)\n"
    )


def test_deid_takes_its_sources_from_a_list_on_standard_input(tmp_path, offline_cli):
    """`--files-from -`: a NUL-separated list (find -print0) of files, folders and paths that
    do not exist, with names that hold PHI; named nowhere in the output."""
    archive = tmp_path / "in"
    write_archive(archive, SampleShape(1, 1, 2, 2), marker=MARKER)  # two series folders
    files = sorted(archive.rglob("*.dcm"))
    assert files[0].parent != files[-1].parent
    listed = [str(files[0]), str(files[-1].parent), str(tmp_path / f"gone {MARKER}.dcm")]
    p = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "deid", "--files-from", "-", "--out", "out"],
        input="\0".join(listed).encode(),
        env=offline_cli.env,
        cwd=tmp_path,
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert p.returncode == 1, p.stderr
    assert p.stdout.decode().strip() == "3 de-identified, 0 skipped, 1 failed"
    assert b": missing: a source does not exist" in p.stderr
    assert MARKER.encode() not in p.stdout + p.stderr
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 3
    p = offline_cli("deid", "--out", "out", check=3)
    assert "no source: give a SOURCE, or a list of them with --files-from" in p.stderr


@pytest.mark.parametrize("per_object", [False, True], ids=["pooled", "per-object"])
def test_verify_reports_its_progress(tmp_path, offline_cli, key_file, per_object):
    """Files done and bytes read so far, as the ingest reports them: each original walked
    (a file that is no DICOM too), then each output searched."""
    archive = tmp_path / "in"
    write_archive(archive, SampleShape(1, 1, 1, 3), marker=MARKER)
    (archive / "readme.txt").write_text("not dicom")
    offline_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    calls: list[tuple[int, int]] = []
    scan = leakscan.verify_pairs if per_object else leakscan.verify_outputs
    report = scan(
        [archive],
        [tmp_path / "out"],
        build_plan(),
        max_member_bytes=1 << 30,
        pseudonyms=leakscan.Pseudonyms(read_key_file(key_file), "DI", 3650),
        progress=lambda files, nbytes: calls.append((files, nbytes)),
    )
    assert (report.scanned, report.leaks) == (3, [])
    walked = [p for p in archive.rglob("*") if p.is_file()]
    copies = list((tmp_path / "out").rglob("*.dcm"))
    # pooled: every file under the outputs is read (the output's id file too); per object:
    # the copies paired
    searched = copies if per_object else [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert (len(walked), len(copies), len(searched)) == (4, 3, 3 if per_object else 4)
    files = walked + searched
    assert calls[-1] == (len(files), sum(p.stat().st_size for p in files))
    assert calls == sorted(calls)
    assert len(calls) == len(files)


def test_verify_quiet_is_accepted(tmp_path, offline_cli):
    """--quiet, as for the ingest (the tests run with CI set: no progress shown either way)."""
    archive = tmp_path / "in"
    write_archive(archive, SampleShape(1, 1, 1, 2), marker=MARKER)
    offline_cli("deid", str(archive), "--out", str(tmp_path / "out"))
    p = offline_cli(
        "verify", "--original", str(archive), "--deidentified", str(tmp_path / "out"), "--quiet"
    )
    assert "2 files scanned, 0 leaks" in p.stdout


def test_deid_reports_its_progress(tmp_path, key_file):
    """Each file seen (a broken link too: a failure of the walk), and the bytes read."""
    archive = tmp_path / "in"
    write_archive(archive, SampleShape(1, 1, 1, 3), marker=MARKER)
    (archive / "readme.txt").write_text("not dicom")
    (archive / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")
    calls: list[tuple[int, int]] = []
    with contextlib.closing(pipeline.local_output(tmp_path / "out")) as output:
        report = pipeline.deidentify_tree(
            [archive],
            output,
            read_key_file(key_file),
            build_plan(),
            id_prefix="DI",
            max_shift_days=3650,
            max_member_bytes=1 << 30,
            progress=lambda files, nbytes: calls.append((files, nbytes)),
        )
    assert report.written == 3
    assert {f.reason for f in report.failures} == {"not_dicom", "broken_link"}
    read = [p for p in archive.rglob("*") if p.is_file()]
    assert calls[-1] == (5, sum(p.stat().st_size for p in read))
    assert calls == sorted(calls)
    assert len(calls) == 5


def test_deid_quiet_is_accepted(tmp_path, offline_cli):
    archive = tmp_path / "in"
    write_archive(archive, SampleShape(1, 1, 1, 2), marker=MARKER)
    p = offline_cli("deid", str(archive), "--out", str(tmp_path / "out"), "--quiet")
    assert "2 de-identified, 0 skipped, 0 failed" in p.stdout
