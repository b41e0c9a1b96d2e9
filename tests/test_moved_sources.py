"""An archive moved elsewhere is still the archive that made the index's copies.

Sources are known by location, so before, an archive moved (a new mount, say) and run again
under other settings had every object refused as a conflict with the copy it had made itself,
in its own output and in a new one alike. Now the index records a keyed digest of each
source's bytes, and a source with the bytes of the one that made a copy is that source.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from blake3 import blake3
from sqlalchemy import text

from indexer import content, keys, spans, work
from indexer.deid import build_plan
from indexer.errors import DeidError
from indexer.records import Failure
from indexer.sources import Walker, held_bytes
from indexer.store.files import LocalStore
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

DATES = ("--option", "retain-long-full-dates")


def _ingest(cli, archive: Path, out: Path, *args: str, workers: int = 1, check: int = 0) -> dict:
    p = cli(
        "ingest",
        str(archive),
        "--out",
        str(out),
        "--batch-size",
        "16",
        "--workers",
        str(workers),
        "--json",
        *args,
        check=check,
    )
    return json.loads(p.stdout)


def _same_as_reference(cli, reference_cli, out: Path, archive: Path, *args: str) -> None:
    """Rows, documents and copies are those of one run of ``archive`` with ``args``."""
    ref = out.with_name("ref")
    reference_cli("ingest", str(archive), "--out", str(ref), "--workers", "1", *args, check=False)
    got, want = index_state(cli, out), index_state(reference_cli, ref)
    for level in ("instance", "study", "series", "patient"):
        assert got[0][level] == want[0][level], level
    assert got[1:] == want[1:]


@pytest.mark.parametrize(("count", "workers"), [(6, 1), (70, 2)])
def test_a_moved_archive_run_under_other_settings_replaces_its_copies(
    count, workers, cli, reference_cli, engine, tmp_path
):
    """Moved, then run into its output with real dates kept: each copy and its rows are
    replaced, as one run of the moved archive with those dates makes them; in worker
    processes too (70 files: the pool), which ask the index on their own connection."""
    archive, moved, out = tmp_path / "archive", tmp_path / "moved", tmp_path / "out"
    write_archive(archive, SampleShape(1, 1, 2, count // 2))
    _ingest(cli, archive, out)
    with engine.connect() as c:
        before = dict(c.execute(text("SELECT sop_uid, source_id FROM dicom_index.instance")).all())
    archive.rename(moved)

    summary = _ingest(cli, moved, out, *DATES, workers=workers)
    assert summary["failure_reasons"] == {}
    assert (summary["files_indexed"], summary["copies_replaced"]) == (count, count)
    _same_as_reference(cli, reference_cli, out, moved, *DATES)
    with engine.connect() as c:
        after = dict(c.execute(text("SELECT sop_uid, source_id FROM dicom_index.instance")).all())
    assert after.keys() == before.keys()
    assert not set(after.values()) & set(before.values())  # the moved sources' now
    assert cli("check").returncode == 0
    check_copies_clean(cli, out, count)
    again = _ingest(cli, moved, out, *DATES)
    assert (again["files_unchanged"], again["copies_replaced"]) == (count, 0)


def test_a_moved_archive_into_a_new_output_under_other_settings(cli, engine, tmp_path):
    """Moved, then run into a new output with real dates kept: copies of its own there,
    recorded as further copies with their source (before: every one a conflict)."""
    archive, moved = tmp_path / "archive", tmp_path / "moved"
    write_archive(archive, SampleShape(1, 1, 1, 3))
    _ingest(cli, archive, tmp_path / "out1")
    kept = copies_in(tmp_path / "out1")
    archive.rename(moved)
    summary = _ingest(cli, moved, tmp_path / "out2", *DATES)
    assert summary["failure_reasons"] == {}
    assert summary["files_indexed"] == 3
    second = copies_in(tmp_path / "out2")
    assert set(second) == set(kept)
    assert all(second[n] != kept[n] for n in kept)
    assert copies_in(tmp_path / "out1") == kept
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT c.copy_sha256, c.source_id <> i.source_id, c.source_digest = "
                "i.source_digest FROM dicom_index.instance_copy c JOIN dicom_index.instance i "
                "USING (sop_uid)"
            )
        ).all()
    assert sorted(r[0] for r in rows) == sorted(
        hashlib.sha256(b).hexdigest() for b in second.values()
    )
    assert all(r[1] and r[2] for r in rows)  # another source, the same bytes
    check_copies_clean(cli, tmp_path / "out1", 3)
    check_copies_clean(cli, tmp_path / "out2", 3)


def test_another_object_at_a_new_location_stays_a_conflict(cli, engine, tmp_path):
    """The first source gone, another object with its SOP Instance UID elsewhere, run with
    real dates kept: refused, and the copy and its rows stay the first source's."""
    first, other, out = tmp_path / "first", tmp_path / "other", tmp_path / "out"
    first.mkdir()
    other.mkdir()
    (first / "a.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1)))
    _ingest(cli, first, out)
    kept = copies_in(out)
    shutil.rmtree(first)
    (other / "a.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, 1, SliceThickness="9.0")))
    summary = _ingest(cli, other, out, *DATES, check=1)
    assert summary["failure_reasons"] == {"duplicate_sop_conflict": 1}
    assert summary["copies_replaced"] == 0
    assert copies_in(out) == kept
    ((name, data),) = kept.items()
    assert pydicom.dcmread(out / name).SliceThickness != 9.0
    with engine.connect() as c:
        (sha,) = c.execute(text("SELECT copy_sha256 FROM dicom_index.instance")).scalars()
    assert sha == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("point", ["copy_written:2", "sql_committed:1"])
def test_a_moved_archive_killed_while_replacing_then_rerun_ends_as_one_run(
    point, cli, reference_cli, tmp_path
):
    """Killed with copies replaced and their rows not yet (or MongoDB's documents not yet),
    then run again: the copies there are already this run's, and their rows follow."""
    archive, moved, out = tmp_path / "archive", tmp_path / "moved", tmp_path / "out"
    write_archive(archive, SampleShape(1, 1, 2, 3))
    _ingest(cli, archive, out)
    archive.rename(moved)
    cli.env["DICOM_INDEX_FAILPOINT"] = point
    p = cli(
        "ingest",
        str(moved),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--workers",
        "1",
        *DATES,
        check=-9,
    )
    assert p.returncode == -9
    del cli.env["DICOM_INDEX_FAILPOINT"]
    summary = _ingest(cli, moved, out, *DATES)
    assert summary["failure_reasons"] == {}
    _same_as_reference(cli, reference_cli, out, moved, *DATES)
    check_copies_clean(cli, out, 6)


def _four_ways(one: bytes, tmp_path: Path) -> list[Path]:
    """The object ``one`` in a folder, a zip, a tar and a compressed tar."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(one)
    for name, kind in (("z", "zip"), ("t", "tar"), ("g", "gztar")):
        shutil.make_archive(str(tmp_path / name), kind, folder)
    return [folder, tmp_path / "z.zip", tmp_path / "t.tar", tmp_path / "g.tar.gz"]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_sources_digest_is_keyed_and_the_same_however_it_is_read(streamed, monkeypatch, tmp_path):
    """Read whole, or streamed as large objects are (hashed as the copy is written, the
    source read no more for it), from a folder, a zip, a tar or a compressed tar: one digest
    of the object's bytes; under another key, another."""
    one = to_bytes(make_instance(1, 1, 1, 1))
    roots = _four_ways(one, tmp_path)
    the_keys = keys.generate()
    want = content.of_bytes(content.key_of(the_keys.blind), one)
    srcs = list(Walker(the_keys.blind, max_member_bytes=1 << 30).walk(roots))
    assert len(srcs) == 4
    if streamed:
        monkeypatch.setattr(spans, "STREAM_FROM", 1)
    store = LocalStore(tmp_path / "out")
    ctx = work.RunContext(build_plan(), the_keys, store, "DI", 30, 1)
    try:
        for src in srcs:
            prepared = work.prepare(src, ctx)
            tapped = isinstance(prepared.source, spans.Tapped)
            assert tapped == (streamed and src.size >= spans.STREAM_FROM and not held_bytes(src))
            if tapped:
                assert prepared.source_digest() is None  # not read yet
            assert work.write_copy(prepared, ctx).source_digest == want
    finally:
        store.close()
    assert streamed == any(isinstance(work.prepare(s, ctx).source, spans.Tapped) for s in srcs)
    assert want != content.of_bytes(content.key_of(keys.generate().blind), one)
    assert want not in (blake3(one).hexdigest(), hashlib.sha256(one).hexdigest())


def test_a_large_object_the_rules_refuse_still_gives_its_sources_digest(monkeypatch, tmp_path):
    """A streamed object refused before its copy is written (burned-in text) has its source
    read to the end for its digest, from a file or an archive's member: the copies made of
    those bytes elsewhere are withdrawn as a whole object's are (before: no digest, and they
    stayed)."""
    one = to_bytes(make_instance(1, 1, 1, 1, BurnedInAnnotation="YES"))
    roots = _four_ways(one, tmp_path)
    the_keys = keys.generate()
    want = content.of_bytes(content.key_of(the_keys.blind), one)
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    store = LocalStore(tmp_path / "out")
    ctx = work.RunContext(build_plan(), the_keys, store, "DI", 30, 1)
    try:
        for src in Walker(the_keys.blind, max_member_bytes=1 << 30).walk(roots):
            assert not held_bytes(src)  # streamed, each of them
            with pytest.raises(DeidError) as e:
                work.prepare(src, ctx)
            assert (e.value.reason, e.value.source_digest) == ("burned_in_annotation", want)
            failed = work.process_safely(src, ctx)
            assert isinstance(failed, Failure)
            assert failed.source_digest == want
    finally:
        store.close()
    assert copies_in(tmp_path / "out") == {}


def test_the_index_records_each_sources_digest(cli, engine, key_file, tmp_path):
    """Each instance row holds its source's keyed digest (and no unkeyed one)."""
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(1, 1, 1, 2))
    _ingest(cli, archive, tmp_path / "out")
    key = content.key_of(keys.read_key_file(key_file).blind)
    want = sorted(content.of_bytes(key, p.read_bytes()) for p in archive.rglob("*.dcm"))
    with engine.connect() as c:
        got = sorted(c.execute(text("SELECT source_digest FROM dicom_index.instance")).scalars())
    assert got == want


def test_a_moved_archive_the_rules_now_refuse_loses_its_copies(
    ingest_role, reference_cli, tmp_path
):
    """Burned-in text allowed, the archive moved, then refused: the two copies made of those
    bytes are withdrawn with their rows and documents, as they are where the archive stayed
    (before: they stayed, the refused sources not known by their new location)."""
    cli = ingest_role
    archive, moved, out = tmp_path / "archive", tmp_path / "moved", tmp_path / "out"
    refusing_archive(archive)
    assert _ingest(cli, archive, out, "--burned-in", "allow")["files_indexed"] == 4
    archive.rename(moved)
    summary = _ingest(cli, moved, out, check=1)
    assert summary["failure_reasons"] == {"burned_in_annotation": 2}
    assert (summary["copies_withdrawn"], summary["files_indexed"]) == (2, 2)
    failures = cli("sql", "SELECT message FROM file_error WHERE run_id = 2", "--csv").stdout
    assert failures.count("; the copy made before of this source is withdrawn") == 2
    _same_as_reference(cli, reference_cli, out, moved)
    assert len(copies_in(out)) == 2
    assert cli("check").returncode == 0
    check_copies_clean(cli, out, 2)
    again = _ingest(cli, moved, out, check=1)
    assert (again["files_unchanged"], again["copies_withdrawn"]) == (2, 0)


@pytest.mark.parametrize(("count", "workers"), [(4, 1), (70, 2)])
def test_a_moved_archive_whose_copies_get_other_names_leaves_no_old_copy(
    count, workers, cli, reference_cli, tmp_path
):
    """The archive moved, then run with UIDs kept: each copy gets another name, and the copy
    and rows under the pseudonymized UIDs are withdrawn, not left beside them (before: they
    stayed, two instances of each object)."""
    archive, moved, out = tmp_path / "archive", tmp_path / "moved", tmp_path / "out"
    write_archive(archive, SampleShape(1, 2, 1, count // 2))
    _ingest(cli, archive, out)
    archive.rename(moved)
    summary = _ingest(cli, moved, out, "--option", "retain-uids", workers=workers)
    assert summary["failure_reasons"] == {}
    assert (summary["files_indexed"], summary["copies_withdrawn"]) == (count, count)
    _same_as_reference(cli, reference_cli, out, moved, "--option", "retain-uids")
    check_copies_clean(cli, out, count)
    again = _ingest(cli, moved, out, "--option", "retain-uids")
    assert (again["files_unchanged"], again["copies_withdrawn"]) == (count, 0)


def test_a_source_and_its_moved_twin_withdraw_one_copy_once(cli, reference_cli, tmp_path):
    """The archive copied elsewhere, both run into one output, then both with UIDs kept: the
    old copies go once (found by location for one, by bytes for the other)."""
    archive, twin, out = tmp_path / "archive", tmp_path / "twin", tmp_path / "out"
    write_archive(archive, SampleShape(1, 1, 1, 3))
    shutil.copytree(archive, twin)
    _ingest(cli, archive, out)
    _ingest(cli, twin, out)
    summary = cli(
        "ingest",
        str(archive),
        str(twin),
        "--out",
        str(out),
        "--workers",
        "1",
        "--json",
        "--option",
        "retain-uids",
    )
    got = json.loads(summary.stdout)
    assert got["failure_reasons"] == {}
    assert (got["files_indexed"], got["copies_withdrawn"]) == (6, 3)
    _same_as_reference(cli, reference_cli, out, archive, "--option", "retain-uids")
