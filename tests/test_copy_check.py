"""`check-copies`: the copies the index describes, checked in their output directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from indexer.store.files import OUTPUT_ID_FILE, read_output_id
from tests.builders import SampleShape, make_instance, to_bytes, write_archive

MARKER = "PHIMARK"
SHAPE = SampleShape(patients=1, studies=1, series=2, instances=3)  # 6 objects


@pytest.fixture
def sql_only(cli):
    cli.env["DICOM_INDEX_MONGO_ENABLED"] = "false"  # copies only: no MongoDB needed
    return cli


def _ingest(cli, archive: Path, out: Path, *args: str, check: bool | int = True) -> dict:
    p = cli("ingest", str(archive), "--out", str(out), "--json", *args, check=check)
    return json.loads(p.stdout)


def _copies(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.dcm") if ".incoming" not in p.parts)


def test_runs_record_the_id_their_output_keeps(sql_only, tmp_path, engine):
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SHAPE, marker=MARKER)
    summary = _ingest(sql_only, archive, out)
    output_id = read_output_id(out)
    assert output_id is not None
    assert summary["output_id"] == output_id
    _ingest(sql_only, archive, out, "--workers", "2")  # the same output keeps its id
    assert read_output_id(out) == output_id
    with engine.connect() as c:
        ids = c.execute(text("SELECT output_id FROM dicom_index.ingest_run ORDER BY id")).all()
    assert ids == [(output_id,), (output_id,)]


def test_a_whole_output_passes(sql_only, tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SHAPE, marker=MARKER)
    _ingest(sql_only, archive, out)
    p = sql_only("check-copies", str(out), "--content")
    assert f"output {read_output_id(out)}: 6 copies checked (sizes and contents)" in p.stdout
    assert "0 missing, 0 unreadable, 0 of another size, 0 damaged, 0 with other content" in p.stdout
    assert "; 0 not indexed here" in p.stdout
    assert "not checked" not in p.stdout


def test_each_difference_is_found_and_named_without_phi(sql_only, tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SHAPE, marker=MARKER)
    _ingest(sql_only, archive, out)
    gone, cut, flipped, spare = _copies(out)[:4]
    gone.unlink()
    cut.write_bytes(cut.read_bytes()[:-1])
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 1  # same size, other content
    flipped.write_bytes(bytes(data))
    stray = out / "2.25.1" / "2.25.2" / "2.25.3.dcm"  # named as a copy, indexed nowhere
    stray.parent.mkdir(parents=True)
    shutil.copy(spare, stray)
    (out / f"{MARKER}_Doe.dcm").write_bytes(b"dropped in by hand")
    (out / ".incoming" / "left.dcm").write_bytes(b"the store's own space: not a copy")
    moved = tmp_path / "moved"
    out.rename(moved)  # the output is known by its id, wherever it is

    p = sql_only("check-copies", str(moved), check=1)
    assert "6 copies checked (sizes), 1 missing, 0 unreadable, 1 of another size, 0 damaged;" in (
        p.stdout
    )
    assert "; 2 not indexed here" in p.stdout
    assert f"missing: {gone.relative_to(out).as_posix()}" in p.stdout
    assert f"other size: {cut.relative_to(out).as_posix()}" in p.stdout
    assert "not indexed: 2.25.1/2.25.2/2.25.3.dcm" in p.stdout
    assert "not indexed: (a file)" in p.stdout  # its name is not a copy's: not printed
    assert "other content" not in p.stdout  # sizes only, unless asked

    p = sql_only("check-copies", str(moved), "--content", check=1)
    assert "1 with other content" in p.stdout
    assert f"other content: {flipped.relative_to(out).as_posix()}" in p.stdout
    for chunk in sql_only.log:
        assert MARKER not in chunk
        assert "Doe" not in chunk


def test_a_rerun_writes_again_the_copies_a_crash_left_empty_zeroed_or_cut(sql_only, tmp_path):
    """A power cut can leave a named copy whose data never reached the disk.

    `check-copies` finds them; the same ingest again writes them anew (before, each was a
    conflict: another object's copy, never overwritten).
    """
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SHAPE, marker=MARKER)
    _ingest(sql_only, archive, out)
    copies = _copies(out)
    whole = {c: c.read_bytes() for c in copies}
    empty, zeroed, cut = copies[:3]
    empty.write_bytes(b"")
    zeroed.write_bytes(b"\0" * len(whole[zeroed]))
    cut.write_bytes(whole[cut][: len(whole[cut]) // 2])
    for how in ((), ("--content",)):  # the zeroed one by its first bytes: no need to hash
        p = sql_only("check-copies", str(out), *how, check=1)
        assert "1 missing" not in p.stdout
        assert "2 of another size, 1 damaged" in p.stdout
        assert f"damaged: {zeroed.relative_to(out).as_posix()}" in p.stdout
        assert "to mend: `dicom-index ingest` of the same sources into this output" in p.stdout
    assert "0 with other content" in p.stdout

    summary = _ingest(sql_only, archive, out)
    assert summary["files_failed"] == 0
    assert summary["files_unchanged"] == 3  # the three whole copies: not read again
    assert {c: c.read_bytes() for c in _copies(out)} == whole
    p = sql_only("check-copies", str(out), "--content")
    assert "0 missing, 0 unreadable, 0 of another size, 0 damaged, 0 with other content" in p.stdout
    assert "to mend" not in p.stdout


def test_two_outputs_of_one_index_are_told_apart(sql_only, tmp_path):
    """The same copy names can be in two outputs: each is checked for its own runs only,
    and the copy a conflicting duplicate left in the second output is found there."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for i in (1, 2):
        (first / f"{i}.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, i)))
    (second / "3.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 3)))
    (second / "1.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1, SliceThickness="9.0")))
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    _ingest(sql_only, first, out1)
    summary = _ingest(sql_only, second, out2, check=1)
    assert summary["failure_reasons"] == {"duplicate_sop_conflict": 1}

    p = sql_only("check-copies", str(out1), str(out2), check=1)
    one, two = (line for line in p.stdout.splitlines() if line.startswith("output "))
    assert one.startswith(f"output {read_output_id(out1)}: 2 copies checked")
    assert "0 missing" in one
    assert one.endswith("; 0 not indexed here")
    assert two.startswith(f"output {read_output_id(out2)}: 1 copies checked")
    assert "0 missing" in two
    assert two.endswith("; 1 not indexed here")  # the conflicting copy, never indexed


def test_an_archive_ingested_into_a_second_output_is_described_in_both(sql_only, tmp_path, engine):
    """The same archive, ingested again into another output, writes its copies there too:
    the index records them, so both outputs check clean; a copy lost from the second is
    found missing there, and its next run writes it again."""
    archive, out1, out2 = tmp_path / "archive", tmp_path / "out1", tmp_path / "out2"
    write_archive(archive, SHAPE, marker=MARKER)
    _ingest(sql_only, archive, out1)
    summary = _ingest(sql_only, archive, out2)
    assert summary["files_already_indexed"] == 6
    assert summary["files_unchanged"] == 0  # its copies are not in this output yet
    assert len(_copies(out2)) == 6
    p = sql_only("check-copies", str(out1), str(out2), "--content")
    for out in (out1, out2):
        assert f"output {read_output_id(out)}: 6 copies checked (sizes and contents)" in p.stdout
    assert p.stdout.count("; 0 not indexed here") == 2
    with engine.connect() as c:
        further = c.execute(text("SELECT output_id FROM dicom_index.instance_copy")).scalars()
        assert set(further) == {read_output_id(out2)}

    assert _ingest(sql_only, archive, out2)["files_unchanged"] == 6  # in place: not read
    lost = _copies(out2)[0]
    lost.unlink()
    p = sql_only("check-copies", str(out1), str(out2), check=1)
    one, two = (line for line in p.stdout.splitlines() if line.startswith("output "))
    assert "0 missing" in one
    assert "1 missing" in two
    assert _ingest(sql_only, archive, out2)["files_unchanged"] == 5
    assert lost.is_file()
    sql_only("check-copies", str(out1), str(out2), "--content")


def test_outputs_of_older_runs_are_counted_not_checked(sql_only, tmp_path, engine):
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SHAPE, marker=MARKER)
    _ingest(sql_only, archive, out)
    with engine.begin() as c:  # as a run made before runs recorded their output
        c.execute(text("UPDATE dicom_index.ingest_run SET output_id = NULL"))
    p = sql_only("check-copies", str(out))
    assert "0 copies checked (sizes)" in p.stdout
    assert "; 0 not indexed here" in p.stdout  # they may be here: not counted against it
    assert "not checked: 6 instance(s) indexed before runs recorded their output" in p.stdout


def test_a_directory_that_is_no_output_is_refused(sql_only, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    p = sql_only("check-copies", str(plain), check=3)
    assert f"no {OUTPUT_ID_FILE} file" in p.stderr
    (plain / OUTPUT_ID_FILE).write_text("not a uuid\n")
    p = sql_only("check-copies", str(plain), check=3)
    assert "is damaged" in p.stderr


def test_progress_counts_only_the_bytes_read(sql_only, tmp_path, engine):
    """Without --content no copy is read whole: MB/s would count bytes that never moved."""
    from indexer import copycheck  # noqa: PLC0415
    from indexer.store import db  # noqa: PLC0415

    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SHAPE, marker=MARKER)
    _ingest(sql_only, archive, out)
    copies = _copies(out)
    copies[0].unlink()
    database = db.Database(engine, embedded=False)
    for content, expected in ((False, 0), (True, sum(p.stat().st_size for p in copies[1:]))):
        seen: list[tuple[int, int]] = []
        report = copycheck.check_copies(
            database, out, content=content, progress=lambda f, b, seen=seen: seen.append((f, b))
        )
        assert report.missing == 1
        assert seen[-1] == (6, expected)
