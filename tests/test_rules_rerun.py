"""A rerun under other rules or settings replaces the copies and rows it made before.

Before, the fingerprint that skips unchanged sources held the tool's version, which never
changed, so new de-identification rules never reached sources indexed already; and a rerun
under other settings refused every changed copy as a conflict with the one it made itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate
from pymongo import MongoClient
from sqlalchemy import Connection, create_engine, text

from indexer import pipeline
from indexer.deid import RULES_VERSION, VIDEO_RULES_VERSION, build_plan
from indexer.store.files import read_output_id
from tests.builders import (
    SampleShape,
    check_copies_clean,
    copies_in,
    index_state,
    make_instance,
    refusing_archive,
    to_bytes,
    write_archive,
)
from tests.deid.test_mp4_tracks import SUBTITLE
from tests.deid.test_mp4_tracks import _file as mp4_file

DATES = ("--option", "retain-long-full-dates")
COMMON = ("--batch-size", "4", "--workers", "1", "--json")


def _ingest(cli, archive: Path, out: Path, *args: str, check: int = 0) -> dict:
    p = cli("ingest", str(archive), "--out", str(out), *COMMON, *args, check=check)
    return json.loads(p.stdout)


def _same_rows(got: tuple, want: tuple) -> None:
    """The index's rows at every level are those of the reference run (``index_state``).

    The vault is not compared: a run that indexed more objects first keeps their identities.
    """
    for level in ("instance", "study", "series", "patient"):
        assert got[0][level] == want[0][level], level


def test_the_settings_digest_holds_the_rules_version(monkeypatch):
    """New rules make every source's fingerprint new: a rerun processes them all again."""
    plan = build_plan()
    before = pipeline.settings_digest(plan, verify=True)
    assert pipeline.settings_digest(build_plan(), verify=True) == before
    monkeypatch.setattr(pipeline, "RULES_VERSION", pipeline.RULES_VERSION + 1)
    assert pipeline.settings_digest(plan, verify=True) != before


def test_a_rerun_under_other_settings_replaces_copies_and_rows(
    cli, reference_cli, engine, tmp_path
):
    """Real dates kept on the second run: each copy and its rows at every level are replaced,
    in place, and the state is that of one run with those settings, MongoDB included."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SampleShape(2, 2, 1, 2))
    first = _ingest(cli, archive, out)
    assert (first["files_indexed"], first["copies_replaced"]) == (8, 0)
    names = set(copies_in(out))
    with engine.connect() as c:
        shifted = set(c.execute(text("SELECT study_date FROM dicom_index.study")).scalars())

    summary = _ingest(cli, archive, out, *DATES)
    assert summary["copies_replaced"] == 8
    assert (summary["files_indexed"], summary["files_failed"]) == (8, 0)
    assert summary["failure_reasons"] == {}
    assert set(copies_in(out)) == names  # the same names: replaced, none added
    with engine.connect() as c:
        dates = set(c.execute(text("SELECT study_date FROM dicom_index.study")).scalars())
    assert dates == {"20230115", "20230215"} != shifted

    reference_cli("ingest", str(archive), "--out", str(tmp_path / "ref"), *COMMON, *DATES)
    got, want = index_state(cli, out), index_state(reference_cli, tmp_path / "ref")
    _same_rows(got, want)  # rows as one run with the dates makes
    assert got[1] == want[1]  # MongoDB's documents too
    assert got[2] == want[2]  # the copies, byte for byte
    assert got[3] == []
    assert cli("check").returncode == 0  # PostgreSQL and MongoDB agree
    p = cli("check-copies", str(out), "--content")
    assert "0 damaged, 0 with other content" in p.stdout

    again = _ingest(cli, archive, out, *DATES)
    assert (again["files_unchanged"], again["copies_replaced"]) == (8, 0)
    with engine.connect() as c:
        runs = c.execute(text("SELECT profile FROM dicom_index.ingest_run ORDER BY id")).scalars()
        assert [(r["rules_version"], r["options"]) for r in runs] == [
            (RULES_VERSION, []),
            (RULES_VERSION, ["rtn_long_full_dates"]),
            (RULES_VERSION, ["rtn_long_full_dates"]),
        ]  # which rules and settings each run applied


def _index_copy_as_it_is(c: Connection, out: Path, name: str) -> None:
    """Make the index describe the copy ``name`` as it now is (as older rules left it)."""
    data = (out / name).read_bytes()
    c.execute(
        text(
            "UPDATE dicom_index.instance SET copy_sha256 = :sha, copy_bytes = :n "
            "WHERE copy_path = :name"
        ),
        {"sha": hashlib.sha256(data).hexdigest(), "n": len(data), "name": name},
    )


def test_a_copy_left_by_older_rules_is_replaced(cli, engine, tmp_path):
    """The state an older rules version left: an overlay in the copies' unused pixel bits
    (the rule that clears them came later) and fingerprints of other settings. A rerun
    replaces those copies with what the rules give now, and says so."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SampleShape(1, 1, 1, 3))
    _ingest(cli, archive, out)
    now = copies_in(out)
    for name in now:  # what the older rules wrote: the high bits set, the index to match
        ds = pydicom.dcmread(out / name)
        ds.PixelData = bytes(b | 0xF0 if i % 2 else b for i, b in enumerate(ds.PixelData))
        ds.save_as(out / name)
    with engine.begin() as c:
        for name in now:
            _index_copy_as_it_is(c, out, name)
        c.execute(text("UPDATE dicom_index.source_seen SET fingerprint = 'v1-' || fingerprint"))
    assert copies_in(out) != now

    p = cli("ingest", str(archive), "--out", str(out), "--workers", "1")
    assert "replaced: 3 copies made before from the same sources" in p.stdout
    assert copies_in(out) == now
    with engine.connect() as c:
        held = dict(
            c.execute(text("SELECT copy_path, copy_sha256 FROM dicom_index.instance")).all()
        )
    assert held == {n: hashlib.sha256(b).hexdigest() for n, b in now.items()}


def test_another_source_of_the_same_uid_stays_a_conflict(cli, engine, tmp_path):
    """Only the source that made a copy replaces it: another object with its SOP Instance
    UID, in the same run, is still refused, and the copy is the first source's."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    (archive / "a.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1)))
    _ingest(cli, archive, out)
    (archive / "b.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1, SliceThickness="9.0")))
    summary = _ingest(cli, archive, out, *DATES, check=1)
    assert summary["copies_replaced"] == 1
    assert summary["failure_reasons"] == {"duplicate_sop_conflict": 1}
    with engine.connect() as c:
        (sha,) = c.execute(text("SELECT copy_sha256 FROM dicom_index.instance")).scalars()
    ((name, data),) = copies_in(out).items()
    assert hashlib.sha256(data).hexdigest() == sha
    assert pydicom.dcmread(out / name).StudyDate == "20230115"  # a's, with the dates kept
    assert pydicom.dcmread(out / name).SliceThickness != 9.0  # not b's


def _further(cli) -> list[tuple[str, str, int]]:
    """The further copies ``cli``'s index records: SOP Instance UID, digest and size."""
    e = create_engine(cli.env["DICOM_INDEX_DATABASE_URL"])
    with e.connect() as c:
        rows = c.execute(
            text("SELECT sop_uid, copy_sha256, copy_bytes FROM dicom_index.instance_copy")
        ).all()
    e.dispose()
    return sorted((r.sop_uid, r.copy_sha256, r.copy_bytes) for r in rows)


def _described(copies: dict[str, bytes]) -> list[tuple[str, str, int]]:
    """(SOP Instance UID, SHA-256, size) of each copy (named by its UIDs, the instance's last)."""
    return sorted((Path(n).stem, hashlib.sha256(b).hexdigest(), len(b)) for n, b in copies.items())


def test_a_second_output_under_other_settings_holds_copies_of_its_own(cli, tmp_path):
    """The same sources into a second output with real dates kept: copies of their own
    there, recorded with their digests (before: each refused as a conflict with the copy the
    source made itself). The index's rows and the first output's copies stay."""
    archive, out1, out2 = tmp_path / "archive", tmp_path / "out1", tmp_path / "out2"
    write_archive(archive, SampleShape(1, 1, 1, 2))
    _ingest(cli, archive, out1)
    kept, rows = copies_in(out1), index_state(cli, out1)[0]
    summary = _ingest(cli, archive, out2, *DATES)
    assert summary["failure_reasons"] == {}
    assert (summary["files_indexed"], summary["copies_replaced"]) == (2, 0)
    assert copies_in(out1) == kept
    second = copies_in(out2)
    assert set(second) == set(kept)
    assert all(second[n] != kept[n] for n in kept)  # the dates: not shifted there
    assert _further(cli) == _described(second)
    _same_rows(index_state(cli, out1), (rows,))  # the rows describe the first copies still
    for out, copies in ((out1, kept), (out2, second)):
        check_copies_clean(cli, out, len(copies))
    assert _ingest(cli, archive, out1)["files_unchanged"] == 2
    assert _ingest(cli, archive, out2, *DATES)["files_unchanged"] == 2


@pytest.mark.parametrize("order", [("out1", "out2"), ("out2", "out1")])
def test_two_outputs_rerun_under_other_settings_end_as_one_run(order, cli, reference_cli, tmp_path):
    """Both outputs run again with real dates kept, the first output's first or second: the
    state is that of one run into each with those dates (before, the second output's copies
    stayed conflicts, and the first output rerun after the second was skipped as unchanged)."""
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(1, 2, 1, 2))
    for name in ("out1", "out2"):
        _ingest(cli, archive, tmp_path / name)
    for name in order:
        summary = _ingest(cli, archive, tmp_path / name, *DATES)
        assert summary["failure_reasons"] == {}
        assert summary["copies_replaced"] == 4, name

    for name in ("out1", "out2"):
        reference_cli(
            "ingest", str(archive), "--out", str(tmp_path / f"ref-{name}"), *COMMON, *DATES
        )
    got = index_state(cli, tmp_path / "out1")
    want = index_state(reference_cli, tmp_path / "ref-out1")
    _same_rows(got, want)
    assert got[1:] == want[1:]  # the documents, and the first output's copies
    assert copies_in(tmp_path / "out2") == copies_in(tmp_path / "ref-out2")
    assert _further(cli) == _further(reference_cli) == _described(copies_in(tmp_path / "out2"))
    assert cli("check").returncode == 0
    for name in ("out1", "out2"):
        check_copies_clean(cli, tmp_path / name, 4)
        assert _ingest(cli, archive, tmp_path / name, *DATES)["files_unchanged"] == 4


def _allowed_into_two(cli, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The refusing archive, ingested into two outputs with burned-in text allowed."""
    archive, out1, out2 = tmp_path / "archive", tmp_path / "out1", tmp_path / "out2"
    refusing_archive(archive)
    for out in (out1, out2):
        _ingest(cli, archive, out, "--burned-in", "allow")
    return archive, out1, out2


def test_a_further_copy_the_rules_now_refuse_is_withdrawn_alone(ingest_role, engine, tmp_path):
    """Burned-in text allowed into two outputs, then refused in the second: the second
    output's two copies of it are withdrawn; the instances stay, their first copies too."""
    cli = ingest_role
    archive, out1, out2 = _allowed_into_two(cli, tmp_path)
    kept = copies_in(out1)
    summary = _ingest(cli, archive, out2, check=1)
    assert summary["failure_reasons"] == {"burned_in_annotation": 2}
    assert summary["copies_withdrawn"] == 2
    assert copies_in(out1) == kept
    assert len(copies_in(out2)) == 2
    assert _further(cli) == _described(copies_in(out2))
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar_one() == 4
    assert cli("check").returncode == 0
    check_copies_clean(cli, out1, 4)
    check_copies_clean(cli, out2, 2)
    again = _ingest(cli, archive, out2, check=1)
    assert (again["files_unchanged"], again["copies_withdrawn"]) == (2, 0)


def test_a_copied_archive_in_a_second_output_is_replaced_there(cli, reference_cli, tmp_path):
    """An archive copied elsewhere, ingested into a second output (other sources, the same
    content: further copies), then again with real dates kept: its copies there are its
    own, replaced (before: refused, the index knowing only the first archive's sources)."""
    archive, moved = tmp_path / "archive", tmp_path / "moved"
    write_archive(archive, SampleShape(1, 2, 1, 2))
    _ingest(cli, archive, tmp_path / "out1")
    shutil.copytree(archive, moved)
    assert _ingest(cli, moved, tmp_path / "out2")["files_already_indexed"] == 4
    summary = _ingest(cli, moved, tmp_path / "out2", *DATES)
    assert summary["failure_reasons"] == {}
    assert summary["copies_replaced"] == 4
    reference_cli("ingest", str(moved), "--out", str(tmp_path / "ref"), *COMMON, *DATES)
    assert copies_in(tmp_path / "out2") == copies_in(tmp_path / "ref")
    assert _further(cli) == _described(copies_in(tmp_path / "out2"))
    check_copies_clean(cli, tmp_path / "out2", 4)
    assert _ingest(cli, moved, tmp_path / "out2", *DATES)["files_unchanged"] == 4


def test_an_instance_withdrawn_from_its_first_output_stays_as_its_further_copy(
    ingest_role, reference_cli, tmp_path
):
    """Burned-in text allowed into two outputs, then refused in the first: the instances keep
    the second output's copies, made under its run's settings, as their first now (before,
    their index rows went and those copies were left undescribed for good). Refused there
    too, the state is that of one run into each under the new policy."""
    cli = ingest_role
    archive, out1, out2 = _allowed_into_two(cli, tmp_path)
    second = copies_in(out2)
    summary = _ingest(cli, archive, out1, check=1)
    assert summary["copies_withdrawn"] == 2
    assert len(copies_in(out1)) == 2
    assert copies_in(out2) == second
    assert len(index_state(cli, out1)[0]["instance"]) == 4  # two of them out2's copies now
    assert len(_further(cli)) == 2
    assert cli("check").returncode == 0
    check_copies_clean(cli, out1, 2)
    check_copies_clean(cli, out2, 4)
    with MongoClient(cli.env["DICOM_INDEX_MONGO_URL"]) as m:  # where each first copy is now
        docs = m[cli.env["DICOM_INDEX_MONGO_DB"]].instances.find({}, {"output_id": 1})
        held = sorted(d["output_id"] for d in docs)
    assert held == sorted([read_output_id(out1)] * 2 + [read_output_id(out2)] * 2)

    summary = _ingest(cli, archive, out2, check=1)
    assert summary["copies_withdrawn"] == 2
    for name in ("out1", "out2"):
        reference_cli(
            "ingest", str(archive), "--out", str(tmp_path / f"ref-{name}"), *COMMON, check=1
        )
    got, want = index_state(cli, out1), index_state(reference_cli, tmp_path / "ref-out1")
    _same_rows(got, want)
    assert got[1:] == want[1:]
    assert copies_in(out2) == copies_in(tmp_path / "ref-out2")
    assert _further(cli) == _further(reference_cli)
    check_copies_clean(cli, out2, 2)


@pytest.mark.parametrize("point", ["copy_written:3", "sql_committed:1"])
def test_a_replacing_run_killed_then_rerun_ends_as_one_run(point, cli, reference_cli, tmp_path):
    """Killed while it replaces (a copy replaced, its rows not yet), then run again: the same
    state as one run with the new settings."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SampleShape(1, 2, 1, 3))
    _ingest(cli, archive, out)
    cli.env["DICOM_INDEX_FAILPOINT"] = point
    p = cli("ingest", str(archive), "--out", str(out), *COMMON, *DATES, check=-9)
    assert p.returncode == -9
    del cli.env["DICOM_INDEX_FAILPOINT"]
    summary = _ingest(cli, archive, out, *DATES)
    assert summary["failure_reasons"] == {}

    reference_cli("ingest", str(archive), "--out", str(tmp_path / "ref"), *COMMON, *DATES)
    got, want = index_state(cli, out), index_state(reference_cli, tmp_path / "ref")
    _same_rows(got, want)
    assert got[1] == want[1]
    assert got[2] == want[2]
    assert got[3] == []
    with MongoClient(cli.env["DICOM_INDEX_MONGO_URL"]) as m:
        docs = m[cli.env["DICOM_INDEX_MONGO_DB"]]["studies"].find({}, {"study_date": 1})
        assert {d["study_date"] for d in docs} == {"20230115", "20230215"}


def test_a_source_the_rules_now_refuse_loses_its_copy(ingest_role, reference_cli, tmp_path):
    """Burned-in text allowed, then refused: the two copies made under the old policy are
    withdrawn with their rows (an emptied series, study and patient too) and documents, and
    the state is that of one run under the new policy."""
    cli = ingest_role
    archive, out = tmp_path / "archive", tmp_path / "out"
    refusing_archive(archive)
    first = _ingest(cli, archive, out, "--burned-in", "allow")
    assert first["files_indexed"] == 4

    summary = _ingest(cli, archive, out, check=1)
    assert summary["failure_reasons"] == {"burned_in_annotation": 2}
    assert (summary["copies_withdrawn"], summary["files_indexed"]) == (2, 2)
    failures = cli("sql", "SELECT message FROM file_error WHERE run_id = 2", "--csv").stdout
    assert failures.count("; the copy made before of this source is withdrawn") == 2
    reference_cli("ingest", str(archive), "--out", str(tmp_path / "ref"), *COMMON, check=1)
    got, want = index_state(cli, out), index_state(reference_cli, tmp_path / "ref")
    _same_rows(got, want)
    assert got[1] == want[1]  # the documents: the series counts one instance less, the rest gone
    assert got[2] == want[2]  # the two copies are gone from the output
    assert len(got[2]) == 2
    assert cli("check").returncode == 0
    p = cli("check-copies", str(out), "--content")
    assert "2 copies checked" in p.stdout
    assert "0 not indexed here" in p.stdout

    again = _ingest(cli, archive, out, check=1)
    assert (again["files_unchanged"], again["copies_withdrawn"]) == (2, 0)


def test_a_source_that_cannot_be_read_now_keeps_its_copy(cli, engine, tmp_path):
    """Damage is no verdict of the rules: a source cut short since keeps the copy it made."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    data = to_bytes(make_instance(1, 1, 1, 1))
    (archive / "a.dcm").write_bytes(data)
    _ingest(cli, archive, out)
    kept = copies_in(out)
    (archive / "a.dcm").write_bytes(data[:-200])
    summary = _ingest(cli, archive, out, *DATES, check=1)
    assert summary["failure_reasons"] == {"truncated": 1}
    assert summary["copies_withdrawn"] == 0
    assert copies_in(out) == kept
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar_one() == 1


def test_a_withdrawing_run_killed_then_rerun_ends_as_one_run(cli, reference_cli, tmp_path):
    """Killed inside the batch's transaction, after the copies were removed and before their
    rows were: the rerun withdraws the rows, and the state is that of one run."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    refusing_archive(archive)
    _ingest(cli, archive, out, "--burned-in", "allow")
    cli.env["DICOM_INDEX_FAILPOINT"] = "vault_written:1"
    p = cli("ingest", str(archive), "--out", str(out), *COMMON, check=-9)
    assert p.returncode == -9
    del cli.env["DICOM_INDEX_FAILPOINT"]
    _ingest(cli, archive, out, check=1)
    reference_cli("ingest", str(archive), "--out", str(tmp_path / "ref"), *COMMON, check=1)
    got, want = index_state(cli, out), index_state(reference_cli, tmp_path / "ref")
    _same_rows(got, want)
    assert got[1:] == want[1:]


def test_documents_withdrawn_while_mongodb_is_away_go_at_the_sync(cli, reference_cli, tmp_path):
    """The MongoDB write of a withdrawing batch waits (pending) when the server is away;
    `sync` then removes the documents and counts the series again."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    refusing_archive(archive)
    _ingest(cli, archive, out, "--burned-in", "allow")
    good_url = cli.env["DICOM_INDEX_MONGO_URL"]
    cli.env["DICOM_INDEX_MONGO_URL"] = "mongodb://127.0.0.1:9/?directConnection=true"
    cli.env["DICOM_INDEX_MONGO_TIMEOUT_MS"] = "300"
    summary = _ingest(cli, archive, out, check=False)
    assert (summary["copies_withdrawn"], summary["mongo"]) == (2, "pending")
    cli.env["DICOM_INDEX_MONGO_URL"] = good_url
    cli("sync")
    reference_cli("ingest", str(archive), "--out", str(tmp_path / "ref"), *COMMON, check=1)
    assert index_state(cli, out)[1] == index_state(reference_cli, tmp_path / "ref")[1]


def test_copies_renamed_by_other_settings_leave_no_old_copy(cli, reference_cli, tmp_path):
    """UIDs kept on the second run: each copy gets another name (the UIDs make it), and the
    copy and rows under the pseudonymized UIDs are withdrawn, not left beside them."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SampleShape(1, 2, 1, 2))
    _ingest(cli, archive, out)
    p = cli("ingest", str(archive), "--out", str(out), "--workers", "1", "--option", "retain-uids")
    assert "4 indexed (0 already in the index), 0 skipped, 0 failed" in p.stdout
    assert "withdrawn: 4 copies made before of the same sources, refused or named" in p.stdout
    reference_cli(
        "ingest", str(archive), "--out", str(tmp_path / "ref"), *COMMON, "--option", "retain-uids"
    )
    got, want = index_state(cli, out), index_state(reference_cli, tmp_path / "ref")
    _same_rows(got, want)
    assert got[1:] == want[1:]  # the documents, and only the new copies
    again = _ingest(cli, archive, out, "--option", "retain-uids")
    assert (again["files_unchanged"], again["copies_withdrawn"]) == (4, 0)


def test_a_location_that_holds_another_object_now_withdraws_nothing(cli, engine, tmp_path):
    """The index keeps what its sources held: a file overwritten by another object (an
    export folder used again) takes nothing of the object it held before, refused or not;
    only the very version of a source the copy was made of is judged again."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    (archive / "a.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1)))
    _ingest(cli, archive, out, "--burned-in", "allow")
    kept = copies_in(out)
    for i, extra in ((2, {"BurnedInAnnotation": "YES"}), (3, {})):
        (archive / "a.dcm").write_bytes(to_bytes(make_instance(i, 1, 1, 1, **extra)))
        summary = _ingest(cli, archive, out, check=False)
        assert summary["copies_withdrawn"] == 0
        assert set(kept) <= set(copies_in(out))  # the first object's copy stays
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar_one() == 2


def test_the_settings_digest_leaves_the_video_rules_version_out(monkeypatch):
    """New video rules leave every fingerprint as it was: each source's recorded video rules
    version decides (the next test)."""
    plan = build_plan()
    before = pipeline.settings_digest(plan, verify=True)
    monkeypatch.setattr(pipeline, "VIDEO_RULES_VERSION", pipeline.VIDEO_RULES_VERSION + 1)
    assert pipeline.settings_digest(plan, verify=True) == before


def _video_object(study: int) -> bytes:
    """An H.264 object whose one frame is an MP4 file with a subtitle track."""
    ds = make_instance(study, 1, 1, 1, rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = uid.MPEG4HP41
    ds.PixelData = encapsulate([mp4_file()])
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 1
    return to_bytes(ds)


def test_new_video_rules_process_again_only_the_video_sources(cli, engine, tmp_path):
    """Each source records the video rules its copy was made under (0: no video). Video
    indexed under other video rules (here: its row set so, its copy as older rules might
    have left it) is processed again and its copy replaced; the slices beside it are
    skipped unread. The rerun records the video rules in force, so the next skips all."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SampleShape(1, 1, 1, 3))
    (archive / "video.dcm").write_bytes(_video_object(7))
    first = _ingest(cli, archive, out)
    assert first["files_indexed"] == 4
    seen = text(
        "SELECT i.transfer_syntax_uid, s.video_rules FROM dicom_index.source_seen s "
        "JOIN dicom_index.instance i USING (sop_uid)"
    )
    with engine.connect() as c:
        rows = sorted(c.execute(seen).all())
    assert rows == sorted(
        [(uid.ExplicitVRLittleEndian, 0)] * 3 + [(uid.MPEG4HP41, VIDEO_RULES_VERSION)]
    )
    now = copies_in(out)
    (name,) = [
        n
        for n, b in now.items()
        if pydicom.dcmread(out / n).file_meta.TransferSyntaxUID == uid.MPEG4HP41
    ]
    assert now[name].count(mp4_file(blanked=True)) == 1
    older = now[name].replace(mp4_file(blanked=True), mp4_file())  # the subtitle kept
    assert SUBTITLE in older
    (out / name).write_bytes(older)
    with engine.begin() as c:
        _index_copy_as_it_is(c, out, name)
        c.execute(text("UPDATE dicom_index.source_seen SET video_rules = 0 - video_rules"))

    again = _ingest(cli, archive, out)
    assert (again["files_unchanged"], again["copies_replaced"], again["files_failed"]) == (3, 1, 0)
    assert copies_in(out) == now  # the video's copy as the rules in force make it
    with engine.connect() as c:
        assert sorted(c.execute(seen).all()) == rows
    third = _ingest(cli, archive, out)
    assert (third["files_unchanged"], third["copies_replaced"]) == (4, 0)
    with engine.connect() as c:
        runs = c.execute(text("SELECT profile FROM dicom_index.ingest_run ORDER BY id")).scalars()
        assert {r["video_rules_version"] for r in runs} == {VIDEO_RULES_VERSION}
