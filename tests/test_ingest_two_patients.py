"""End to end: 2 patients x 2 studies x 2 series x 3 instances, PHI planted everywhere."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import text

from indexer.pipeline import Distinct
from tests.builders import SampleShape, all_bytes, files_sha, make_instance, to_bytes, write_archive
from tests.conftest import pg_dump

MARKER = "PHIMARK"
SHAPE = SampleShape(patients=2, studies=2, series=2, instances=3)
N_FILES = 24


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    assert write_archive(root, SHAPE, marker=MARKER) == N_FILES
    return root


def _copies(out: Path) -> list[Path]:
    return sorted(out.rglob("*.dcm"))


def test_ingest_indexes_every_file_and_leaks_nothing(
    cli, archive, tmp_path, engine, pg_server, db_url
):
    out = tmp_path / "out"
    p = cli("ingest", str(archive), "--out", str(out))
    assert "24 seen, 24 indexed" in p.stdout

    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar() == N_FILES
        assert c.execute(text("SELECT count(*) FROM dicom_index.patient")).scalar() == 2
        assert c.execute(text("SELECT count(*) FROM dicom_index.study")).scalar() == 4
        assert c.execute(text("SELECT count(*) FROM dicom_index.series")).scalar() == 8
        run = c.execute(
            text(
                "SELECT status, files_seen, files_indexed, studies, series, "
                "instances FROM dicom_index.ingest_run"
            )
        ).one()
    assert tuple(run) == ("completed", 24, 24, 4, 8, 24)

    copies = _copies(out)
    assert len(copies) == N_FILES
    for path in copies:
        ds = pydicom.dcmread(path)
        assert path.stem == ds.SOPInstanceUID
        assert path.parent.name == ds.SeriesInstanceUID
        assert path.parent.parent.name == ds.StudyInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.preamble == b"\x00" * 128
        assert ds.PatientIdentityRemoved == "YES"

    # no marker in any byte of any copy (names included), nor in the index dump, nor in output
    for name, data in all_bytes(out):
        assert MARKER not in name
        assert MARKER.encode() not in data, name
    dump = pg_dump(pg_server, db_url, "--schema=dicom_index")
    assert b"instance" in dump  # the dump really holds the index
    assert MARKER.encode() not in dump
    for chunk in cli.log:
        assert MARKER not in chunk
        assert "Doe_" not in chunk  # the source folder's name


def test_grouping_and_references_survive(cli, archive, tmp_path):
    out = tmp_path / "out"
    cli("ingest", str(archive), "--out", str(out))
    by_sop = {}
    for path in _copies(out):
        ds = pydicom.dcmread(path)
        by_sop[ds.SOPInstanceUID] = ds
    series = {}
    for ds in by_sop.values():
        series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    assert len(series) == 8
    for members in series.values():
        assert len(members) == 3
        assert len({m.StudyInstanceUID for m in members}) == 1
        assert len({m.PatientID for m in members}) == 1
        first = next(m for m in members if int(m.InstanceNumber) == 1)
        for m in members:
            if int(m.InstanceNumber) > 1:
                ref = m.ReferencedImageSequence[0].ReferencedSOPInstanceUID
                assert ref == first.SOPInstanceUID  # the reference points at the new UID
                assert ref in by_sop
    studies = {ds.StudyInstanceUID for ds in by_sop.values()}
    assert len(studies) == 4
    assert len({ds.PatientID for ds in by_sop.values()}) == 2


def test_reingest_changes_nothing_and_patient_keeps_pseudonym(cli, archive, tmp_path, engine):
    out = tmp_path / "out"
    cli("ingest", str(archive), "--out", str(out))
    before = files_sha(out)
    with engine.connect() as c:
        counts = [
            c.execute(text(f"SELECT count(*) FROM dicom_index.{t}")).scalar()
            for t in ("patient", "study", "series", "instance")
        ]
        vault_rows = c.execute(text("SELECT count(*) FROM vault.identity")).scalar()
        pid = c.execute(
            text("SELECT patient_id FROM dicom_index.study ORDER BY study_uid LIMIT 1")
        ).scalar()
    p = cli("ingest", str(archive), "--out", str(out), "--json")
    summary = json.loads(p.stdout)
    assert summary["files_already_indexed"] == N_FILES
    assert files_sha(out) == before  # byte-identical copies, no new files
    with engine.connect() as c:
        assert counts == [
            c.execute(text(f"SELECT count(*) FROM dicom_index.{t}")).scalar()
            for t in ("patient", "study", "series", "instance")
        ]
        assert vault_rows == c.execute(text("SELECT count(*) FROM vault.identity")).scalar()

    # a second archive: a new study of patient 1, in a separate run and process
    second = tmp_path / "second"
    second.mkdir()
    (second / "new.dcm").write_bytes(to_bytes(make_instance(patient=1, study=9, marker=MARKER)))
    cli("ingest", str(second), "--out", str(out))
    with engine.connect() as c:
        patients = c.execute(
            text(
                "SELECT patient_id, count(*) FROM dicom_index.study GROUP BY patient_id ORDER BY 1"
            )
        ).all()
    assert len(patients) == 2
    assert sorted(n for _, n in patients) == [2, 3]
    assert pid in {p for p, _ in patients}
    new_ds = pydicom.dcmread(
        next(p for p in _copies(out) if p.relative_to(out).as_posix() not in before)
    )
    old_ds = pydicom.dcmread(next(iter(_copies(out))))
    assert new_ds.PatientID in {old_ds.PatientID, *(p for p, _ in patients)}
    assert {new_ds.PatientID} <= {p for p, n in patients if n == 3}


def test_reidentify_needs_reason_and_key(cli, archive, tmp_path, engine):
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    original = make_instance(1, 1, 1, 1, marker=MARKER)
    with engine.connect() as c:
        study_uid = (
            c.execute(
                text(
                    "SELECT study_uid FROM dicom_index.study s JOIN vault.identity v "
                    "ON v.pseudonym = s.study_uid ORDER BY study_uid"
                )
            )
            .scalars()
            .all()
        )
    found = []
    for uid in study_uid:
        p = cli("reidentify", uid, "--reason", "route the report", "--json")
        released = {r["kind"]: r["original"] for r in json.loads(p.stdout)}
        found.append(released)
    match = [r for r in found if r["study_uid"] == original.StudyInstanceUID]
    assert len(match) == 1
    assert match[0]["patient_id"] == original.PatientID
    assert match[0]["accession_number"] == original.AccessionNumber

    with engine.connect() as c:
        audits = c.execute(
            text("SELECT purpose, target, result, rows_released FROM vault.audit_log ORDER BY id")
        ).all()
    assert len(audits) == len(study_uid)
    assert all(a.purpose == "route the report" and a.result == "released" for a in audits)

    # no reason: refused before anything is released; a blank reason likewise
    p = cli("reidentify", study_uid[0], check=2)
    assert "--reason" in p.stderr
    p = cli("reidentify", study_uid[0], "--reason", "   ", check=3)
    assert "reason is required" in p.stderr

    # the wrong key: a clear error, no original
    other = tmp_path / "other-keys.json"
    from indexer import keys  # noqa: PLC0415

    keys.write_key_file(other, keys.generate())
    cli.env["DICOM_INDEX_KEY_FILE"] = str(other)
    p = cli("reidentify", study_uid[0], "--reason", "audit", check=3)
    assert "key id" in p.stderr
    assert MARKER not in p.stdout + p.stderr
    with engine.connect() as c:  # the attempt is audited all the same
        assert (
            c.execute(text("SELECT count(*) FROM vault.audit_log")).scalar() == len(study_uid) + 1
        )

    # the vault holds no cleartext
    with engine.connect() as c:
        for table in ("identity", "source"):
            rows = c.execute(text(f"SELECT * FROM vault.{table}")).all()
            assert rows
            blob = b"".join(
                bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode()
                for r in rows
                for v in r
            )
            assert MARKER.encode() not in blob
            assert original.StudyInstanceUID.encode() not in blob


def test_zip_with_bad_members(cli, tmp_path, engine):
    import zipfile  # noqa: PLC0415

    good = [to_bytes(make_instance(1, 1, 1, i, marker=MARKER)) for i in (1, 2, 3)]
    truncated = to_bytes(make_instance(2, 1, 1, 1, marker=MARKER))[:-300]
    z = tmp_path / "mixed.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i, data in enumerate(good):
            zf.writestr(f"Doe_{MARKER}/good{i}.dcm", data)
        zf.writestr(f"Doe_{MARKER}/notes_{MARKER}.txt", f"patient {MARKER} notes")
        zf.writestr(f"Doe_{MARKER}/broken.dcm", truncated)
    p = cli("ingest", str(z), "--out", str(tmp_path / "out"), check=1)
    assert "3 indexed" in p.stdout
    assert "1 skipped, 1 failed" in p.stdout
    (hint,) = [line for line in p.stdout.splitlines() if line.startswith("which, and why: ")]
    query = hint.split('"')[1]  # the query the summary offers lists the two, as stored
    listed = json.loads(cli("sql", query, "--json").stdout)
    assert sorted((r["outcome"], r["reason"]) for r in listed) == [
        ("failed", "truncated"),
        ("skipped", "not_dicom"),
    ]
    with engine.connect() as c:
        errors = c.execute(
            text(
                "SELECT outcome, reason, message, source_id "
                "FROM dicom_index.file_error ORDER BY reason"
            )
        ).all()
        assert c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar() == 3
    assert [(e.outcome, e.reason) for e in errors] == [
        ("skipped", "not_dicom"),
        ("failed", "truncated"),
    ]
    for e in errors:
        assert MARKER not in e.message
        assert e.source_id.startswith("src-")
    for chunk in cli.log:
        assert MARKER not in chunk
    # the failed file can be found again by those allowed to: its path is in the vault
    p = cli("reidentify", errors[1].source_id, "--reason", "fix the broken file", "--json")
    assert json.loads(p.stdout)[0]["original"].endswith("!Doe_PHIMARK/broken.dcm")


def test_copies_parse_with_pydicom_from_bytes(cli, archive, tmp_path):
    out = tmp_path / "out"
    cli("ingest", str(archive), "--out", str(out))
    for path in _copies(out):
        ds = pydicom.dcmread(io.BytesIO(path.read_bytes()))
        assert ds.PixelData  # pixel data carried across unchanged in length
        assert len(ds.PixelData) == 16 * 16 * 2


def test_same_uid_other_content_into_another_output_is_a_recorded_conflict(cli, tmp_path, engine):
    """Two output directories, one index: the second object with the same SOP Instance UID
    and other content is a recorded conflict, not "already indexed"; the index keeps the
    first copy, and a rerun does not skip the conflicting source as unchanged."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "a.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1)))
    (second / "a.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1, SliceThickness="9.0")))
    cli("ingest", str(first), "--out", str(tmp_path / "out1"))
    with engine.connect() as c:
        digest = c.execute(text("SELECT copy_sha256 FROM dicom_index.instance")).scalar_one()
    for _ in range(2):  # the rerun must find the conflict again
        p = cli("ingest", str(second), "--out", str(tmp_path / "out2"), "--json", check=1)
        summary = json.loads(p.stdout)
        assert summary["failure_reasons"] == {"duplicate_sop_conflict": 1}
        assert summary["files_indexed"] == 0
    with engine.connect() as c:
        rows = c.execute(text("SELECT copy_sha256 FROM dicom_index.instance")).all()
        reasons = c.execute(text("SELECT reason FROM dicom_index.file_error")).scalars().all()
    assert rows == [(digest,)]
    assert reasons == ["duplicate_sop_conflict", "duplicate_sop_conflict"]


def test_a_file_name_that_is_not_utf8_is_kept_byte_for_byte(cli, tmp_path, engine):
    """Old archives hold file names in Latin-1 and other encodings: Python gives their bytes
    as lone surrogates. Their encrypted locations crashed the run; now the vault keeps them,
    and gives the very same bytes back."""
    root = tmp_path / "in"
    name = os.fsdecode(b"Doe \xe9\xff PHIMARK.dcm")  # not UTF-8
    (root / os.fsdecode(b"caf\xe9")).mkdir(parents=True)
    path = root / os.fsdecode(b"caf\xe9") / name
    path.write_bytes(to_bytes(make_instance(1, 1, 1, 1, marker=MARKER)))
    p = cli("ingest", str(root), "--out", str(tmp_path / "out"), "--json")
    assert json.loads(p.stdout)["files_indexed"] == 1
    with engine.connect() as c:
        source_id = c.execute(text("SELECT source_id FROM dicom_index.instance")).scalar_one()
    p = cli("reidentify", source_id, "--reason", "find the original file", "--json")
    original = json.loads(p.stdout)[0]["original"]
    assert os.fsencode(original) == os.fsencode(str(path))
    p = cli("reidentify", source_id, "--reason", "show the original file")
    assert "caf\\xe9" in p.stdout  # its bytes shown as escapes, as `ls -b` shows them
    assert "\ufffd" not in p.stdout


def test_sql_writes_csv_and_json_as_the_rows_come(cli, archive, tmp_path):
    """`sql --csv` and `--json` write rows as the server streams them (an export of any
    size); the JSON is the one array `json.dumps(indent=1)` gives. An error of the server
    after some rows ends the command as one before any would."""
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    query = "SELECT sop_uid, instance_number, header->'00080060' AS modality FROM instance"
    p = cli("sql", "--json", query + " ORDER BY sop_uid")
    rows = json.loads(p.stdout)
    assert len(rows) == N_FILES
    assert rows[0]["modality"] == {"vr": "CS", "Value": ["CT"]}
    assert p.stdout == json.dumps(rows, indent=1) + "\n"
    assert cli("sql", "--json", query + " WHERE false").stdout == "[]\n"
    p = cli("sql", "--csv", query)
    assert p.stdout.splitlines()[0] == "sop_uid,instance_number,modality"
    assert len(p.stdout.splitlines()) == N_FILES + 1
    assert (
        cli("sql", "--csv", query + " WHERE false").stdout == "sop_uid,instance_number,modality\n"
    )
    late = "SELECT 1 / (n - 2500) AS x FROM generate_series(1, 3000) n"  # fails past row 2499
    p = cli("sql", "--csv", late, check=3)
    assert p.stderr.strip().endswith("error (store): query failed: division by zero")
    assert "(" in cli("sql", "SELECT count(*) FROM instance").stdout  # the table, then a count
    p = cli("sql", "SELECT n, 'v' || n AS value FROM generate_series(1, 2500) n")
    lines = p.stdout.splitlines()
    assert lines[-1] == "(2500 rows)"
    assert sum(" value " in line for line in lines) == 3  # pages of 1,000 rows, each a table
    numbers = [int(m[1]) for line in lines if (m := re.search(r"(\d+) +│ v\1 ", line))]
    assert sorted(numbers) == list(range(1, 2501))
    assert cli("sql", "SELECT 1 AS n WHERE false").stdout.splitlines()[-1] == "(0 rows)"


def test_ingest_takes_sources_from_a_list_and_from_the_command_line(cli, archive, tmp_path):
    """SOURCEs first, then the list's lines (blank ones ignored): the same objects as
    walking the archive, once each."""
    files = sorted(archive.rglob("*.dcm"))
    listed = tmp_path / "sources.txt"
    listed.write_text("\n".join(str(f) for f in files[4:]) + "\n\n")
    p = cli("ingest", str(files[0].parent), "--files-from", str(listed), "--out", "out", "--json")
    summary = json.loads(p.stdout)
    assert summary["files_indexed"] == N_FILES - 4 + len(list(files[0].parent.glob("*.dcm")))
    assert summary["files_failed"] == 0


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("  ", "error (config): the query is empty: give one SELECT"),
        ("SELECT 1; SELECT 2", "error (store): query failed: cannot insert multiple commands"),
        (
            "DELETE FROM instance",
            "error (store): query failed: cannot execute DELETE in a read-only",
        ),
        ("SELECT * FROM vault.identity", "error (store): query failed: permission denied for"),
    ],
    ids=["empty", "two statements", "a write", "the vault"],
)
def test_sql_refuses_what_is_not_one_read_only_select(cli, query, said):
    p = cli("sql", query, check=3)
    assert p.stderr.strip().splitlines()[-1].startswith(said)


def test_the_summary_counts_an_object_once_however_many_files_hold_it(cli, archive, tmp_path):
    """Files counted as files, the index's studies, series and instances as distinct ones:
    an object in two files of the archive, or listed three times, is one instance."""
    files = sorted(archive.rglob("*.dcm"))
    again = tmp_path / "again"
    again.mkdir()
    for i, f in enumerate(files[:5]):  # the same objects, copied elsewhere: 5 more files
        (again / f"copy{i}.dcm").write_bytes(f.read_bytes())
    listed = tmp_path / "sources.txt"
    listed.write_text(f"{again}\n{files[7]}\n{files[7]}\n")  # 2 more files, one object
    for run in (1, 2):  # the second finds every file unchanged
        p = cli("ingest", str(archive), "--files-from", str(listed), "--out", "out", "--json")
        summary = json.loads(p.stdout)
        assert summary["files_indexed"] == N_FILES + 5 + 2
        assert summary["files_unchanged"] == (0 if run == 1 else N_FILES + 5 + 2)
        assert (summary["studies"], summary["series"], summary["instances"]) == (4, 8, N_FILES)
        p = cli("ingest", str(archive), "--files-from", str(listed), "--out", "out")
        assert f"index: 4 studies, 8 series, {N_FILES} instances" in p.stdout
    rows = cli("sql", "--json", "SELECT instances FROM ingest_run ORDER BY id").stdout
    assert [r["instances"] for r in json.loads(rows)] == [N_FILES] * 4


def test_distinct_counts_across_merges(monkeypatch):
    monkeypatch.setattr(Distinct, "MERGE_AT", 4)
    d = Distinct()
    assert len(d) == 0
    for i in range(1000):
        d.add(f"2.25.{i % 377}")
        if i % 97 == 0:
            assert len(d) == min(i + 1, 377)  # counting merges what is held
    assert len(d) == 377
    d.add("2.25.5")
    d.add("2.25.377")
    assert len(d) == 378
