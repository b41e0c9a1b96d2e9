"""The MongoDB index: consistent with PostgreSQL, PHI-free, idempotent, repairable."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path

import bson
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pymongo import MongoClient
from pymongo.errors import WriteError
from sqlalchemy import text

from indexer.errors import StoreError
from indexer.pipeline import compare_stores, rebuild_documents, sync_pending
from indexer.store import db, mongo, sql
from indexer.store.mongo import MongoDocs, MongoSink
from tests.builders import SampleShape, ingest_job, make_instance, to_bytes, write_archive

MARKER = "PHIMARK"
N = 24
BATCHES = N // 4  # ingest_job commits 4 files a batch


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    write_archive(root, SampleShape(2, 2, 2, 3), marker=MARKER)
    return root


@pytest.fixture
def mdb(mongo_url, mongo_db):
    with MongoClient(mongo_url) as c:
        yield c[mongo_db]


def _all_docs(mdb) -> dict[str, list[dict]]:
    """The index's documents (``write_marks`` counts writes: it is not the index)."""
    names = set(mdb.list_collection_names()) - {mongo.WRITE_MARKS}
    return {n: sorted(mdb[n].find(), key=lambda d: d["_id"]) for n in names}


def test_documents_agree_with_rows_and_hold_no_phi(cli, archive, tmp_path, engine, mdb):
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    assert mdb.instances.count_documents({}) == N
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar() == N
        rows = c.execute(
            text(
                "SELECT i.sop_uid, i.series_uid, i.study_uid, i.patient_id, i.instance_number, "
                "i.copy_sha256, i.header, se.modality FROM dicom_index.instance i "
                "JOIN dicom_index.series se USING (series_uid) ORDER BY random() LIMIT 8"
            )
        ).all()
        pending = c.execute(
            text("SELECT count(*) FROM dicom_index.ingest_batch WHERE NOT mongo_done")
        ).scalar()
    assert pending == 0
    for r in rows:
        doc = mdb.instances.find_one({"_id": r.sop_uid})
        assert doc is not None
        for field in (
            "sop_uid",
            "series_uid",
            "study_uid",
            "patient_id",
            "instance_number",
            "copy_sha256",
            "header",
            "modality",
        ):
            assert doc[field] == getattr(r, field), field
    output_id = (tmp_path / "out" / ".dicom-index-output").read_text().strip()
    assert mdb.instances.count_documents({"output_id": output_id}) == N  # where each copy is
    studies = list(mdb.studies.find())
    assert len(studies) == 4
    assert all(
        s["modalities"] == ["CT"] and s["n_series"] == 2 and s["n_instances"] == 6 for s in studies
    )
    assert mdb.series.count_documents({"n_instances": 3}) == 8

    dump = json.dumps(_all_docs(mdb), default=str)
    assert "2.25." in dump  # the dump really holds the documents
    assert MARKER not in dump
    assert "Doe_" not in dump

    p = cli("check")
    assert "agree" in p.stdout


def test_reingest_leaves_documents_unchanged(cli, archive, tmp_path, mdb):
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    before = _all_docs(mdb)
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    assert _all_docs(mdb) == before


def test_validator_rejects_a_bad_document(cli, archive, tmp_path, mdb):
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    with pytest.raises(WriteError) as e:
        mdb.instances.insert_one({"_id": "not-a-uid", "header": "not an object"})
    assert e.value.code == 121
    with pytest.raises(WriteError):
        mdb.studies.insert_one({"_id": "1.2.3", "patient_id": "x"})  # counts missing
    (mark,) = mdb[mongo.WRITE_MARKS].find()  # raised by each batch's write: nothing else
    assert mark["_id"] == "writes"
    assert mark["n"] >= 1
    with pytest.raises(WriteError):
        mdb[mongo.WRITE_MARKS].insert_one({"_id": "1.2.3", "n": 1, "note": "not a counter"})


def test_readme_example_queries(cli, archive, tmp_path, mdb):
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    pid = mdb.studies.find_one()["patient_id"]
    ct_series = list(mdb.series.find({"patient_id": pid, "modality": "CT"}))
    assert len(ct_series) == 4
    per_month = list(
        mdb.studies.aggregate(
            [
                {"$unwind": "$modalities"},
                {
                    "$group": {
                        "_id": {"modality": "$modalities", "month": "$study_month"},
                        "studies": {"$sum": 1},
                    }
                },
            ]
        )
    )
    assert sum(g["studies"] for g in per_month) == 4
    assert mdb.instances.count_documents({"header.00080060.Value": "CT"}) == N


def test_mongo_unreachable_gives_pending_and_exit_4(cli, archive, tmp_path, engine, mdb):
    good_url = cli.env["DICOM_INDEX_MONGO_URL"]
    cli.env["DICOM_INDEX_MONGO_URL"] = "mongodb://127.0.0.1:9/?directConnection=true"
    cli.env["DICOM_INDEX_MONGO_TIMEOUT_MS"] = "300"
    p = cli("ingest", str(archive), "--out", str(tmp_path / "out"), check=4)
    assert "batches pending" in p.stdout
    assert "24 indexed" in p.stdout
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar() == N
    p = cli("check", check=3)  # cannot compare with a server that does not answer
    assert "MongoDB count failed" in p.stderr

    cli.env["DICOM_INDEX_MONGO_URL"] = good_url
    p = cli("check", check=1)  # the stores differ, and check says so
    assert "24 rows in PostgreSQL, 0 documents in MongoDB" in p.stdout
    assert "batches wait for their MongoDB write" in p.stdout
    # the next ingest (of anything) first brings MongoDB level
    empty = tmp_path / "empty"
    empty.mkdir()
    cli("ingest", str(empty), "--out", str(tmp_path / "out"))
    assert mdb.instances.count_documents({}) == N
    assert "agree" in cli("check").stdout


def test_sync_all_repairs_documents_lost_changed_or_left_over(cli, archive, tmp_path, engine, mdb):
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    before = _all_docs(mdb)
    lost = [d["_id"] for d in before["instances"][:5]]
    mdb.instances.delete_many({"_id": {"$in": lost}})
    mdb.series.delete_many({})
    changed = before["studies"][0]["_id"]
    mdb.studies.update_one({"_id": changed}, {"$set": {"n_instances": 999}})
    orphan = {**before["instances"][0], "_id": "2.25.1234567890"}  # a row PostgreSQL lacks
    mdb.instances.insert_one(orphan)
    with engine.begin() as c:  # and two batches wait for their write again
        c.execute(
            text(
                "UPDATE dicom_index.ingest_batch SET mongo_done = false WHERE id IN "
                "(SELECT id FROM dicom_index.ingest_batch ORDER BY id LIMIT 2)"
            )
        )
    checked = cli("check", check=1).stdout
    assert checked.count("difference:") >= 2
    assert "`dicom-index sync --all` rewrites every document" in checked  # the way to mend
    p = cli("sync", "--all")
    assert f"rewrote the documents of {N} instances" in p.stdout
    assert "1 instances, 0 series, 0 studies" in p.stdout
    assert _all_docs(mdb) == before
    assert "agree" in cli("check").stdout
    with engine.connect() as c:
        waiting = "SELECT count(*) FROM dicom_index.ingest_batch WHERE NOT mongo_done"
        assert c.execute(text(waiting)).scalar() == 0
    assert not any(MARKER in line for line in cli.log)


def test_sync_all_fills_a_new_mongodb_a_group_at_a_time(
    cli, archive, tmp_path, db_url, mongo_url, mongo_db
):
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    database = db.connect(db_url, tmp_path / "state")
    fresh = f"{mongo_db}new"
    sink = MongoSink(mongo_url, fresh, timeout_ms=5000)
    walked = []
    try:
        report = rebuild_documents(database, sink, group=5, progress=lambda n, _b: walked.append(n))
        assert report.instances == N
        assert walked == [5, 10, 15, 20, N]  # five groups, each written as it came
        assert report.removed == {"instances": 0, "series": 0, "studies": 0}
        assert sink.counts() == {"instances": N, "series": 8, "studies": 4}
        assert compare_stores(database, sink, sample=N) == []
    finally:
        sink.db.client.drop_database(fresh)
        sink.close()
        database.engine.dispose()


def test_server_stopped_halfway_then_sync(db_url, key_file, archive, tmp_path):
    # the test stops and restarts its own server, so it needs the in-process one
    SecantusDBServer = pytest.importorskip("secantus").SecantusDBServer  # noqa: N806

    storage = tempfile.mkdtemp(prefix="secantus-stop-")
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=storage)
    server.start()
    database = db.connect(db_url, tmp_path / "state")
    sink = MongoSink(server.uri, "halfway", timeout_ms=500)
    try:
        job = ingest_job(database, key_file, tmp_path / "out", mongo=sink)
        write, written = sink.write, []

        def write_then_stop_at_half(docs: MongoDocs) -> None:
            write(docs)
            written.append(docs)
            if len(written) == BATCHES // 2:  # the server goes away after half the batches
                server.stop()

        sink.write = write_then_stop_at_half  # type: ignore[method-assign]
        summary = job.run([archive])
        job.output.close()
        sink.close()
        assert summary.status == "completed"
        assert summary.files_indexed == N
        assert summary.mongo == "pending"
        assert summary.mongo_pending_batches == BATCHES - BATCHES // 2
        assert len(list((tmp_path / "out").rglob("*.dcm"))) == N

        server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=storage)
        server.start()
        sink = MongoSink(server.uri, "halfway", timeout_ms=5000)
        written_before = sink.counts()["instances"]
        assert 0 < written_before < N
        report = sync_pending(database, sink)
        assert report.batches == summary.mongo_pending_batches
        assert compare_stores(database, sink, sample=N) == []
        assert sink.counts() == {"instances": N, "series": 8, "studies": 4}
        assert sync_pending(database, sink).batches == 0  # nothing left, nothing duplicated
    finally:
        sink.close()
        server.stop()
        database.engine.dispose()
        shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture
def background_job(db_url, key_file, tmp_path, mongo_url):
    database = db.connect(db_url, tmp_path / "state")
    sink = MongoSink(mongo_url, f"background{tmp_path.name[-12:]}", timeout_ms=5000)
    job = ingest_job(database, key_file, tmp_path / "out", mongo=sink)
    yield database, sink, job
    job.output.close()
    sink.close()
    database.engine.dispose()


def test_documents_are_written_beside_the_files_in_commit_order(background_job, archive):
    database, sink, job = background_job
    seen = []
    real = job._mongo_write

    def spy(batch_ids, sop_uids):
        seen.append((threading.current_thread().name, batch_ids))
        return real(batch_ids, sop_uids)

    job._mongo_write = spy
    summary = job.run([archive])
    assert summary.mongo == "written"  # every write finished before the run ended
    assert summary.mongo_pending_batches == 0
    assert len(seen) == N // 4  # one write per batch of 4
    assert all(name.startswith("mongo-writer") for name, _ in seen)
    written = [b for _, ids in seen for b in ids]
    assert written == sorted(written)
    assert compare_stores(database, sink, sample=N) == []


def test_a_failed_document_write_ends_the_run_and_stays_pending(
    background_job, archive, monkeypatch
):
    database, sink, job = background_job
    calls = []
    real = sql.rows_for_documents

    def failing_second(s, sop_uids):
        calls.append(len(sop_uids))
        if len(calls) == 2:  # the second batch's write
            raise StoreError("the database went away (test)")
        return real(s, sop_uids)

    monkeypatch.setattr(sql, "rows_for_documents", failing_second)
    with pytest.raises(StoreError, match="went away"):
        job.run([archive])
    monkeypatch.undo()
    with db.transaction(database.engine) as s:
        pending = sql.count_pending_batches(s)
    assert pending >= 1  # the failed batch (and any after it) wait for their write
    report = sync_pending(database, sink)
    assert report.batches == pending
    assert compare_stores(database, sink, sample=N) == []


def _structure_set(contours: int, points: int) -> Dataset:
    """An RT structure set of ``contours`` contours of ``points`` points each."""
    ds = make_instance(3, 1, 1, 1, marker="PHIMARK", Modality="RTSTRUCT")
    items = []
    for k in range(contours):
        c = Dataset()
        c.ContourGeometricType = "CLOSED_PLANAR"
        c.NumberOfContourPoints = points
        c.ContourData = [f"{(k + i) * 0.5:.2f}" for i in range(3 * points)]
        items.append(c)
    roi = Dataset()
    roi.ReferencedROINumber = 1
    roi.ContourSequence = Sequence(items)
    ds.ROIContourSequence = Sequence([roi])
    return ds


def test_long_numbers_and_texts_are_bulk_data_in_the_index(cli, tmp_path, engine, mdb):
    """Contour points (DS, 3 numbers a point) are data, not metadata to query by: a value over
    VALUE_BULK_THRESHOLD is a BulkDataURI into the copy (PS3.18 F.2.6), in PostgreSQL and
    MongoDB alike; short ones stay values."""
    root = tmp_path / "in"
    root.mkdir()
    ds = _structure_set(contours=3, points=400)  # ContourData: about 6 KB each
    ds.ROIContourSequence[0].ContourSequence[0].ContourData = ["1.0", "2.0", "3.0"]
    ds.ROIContourSequence[0].ContourSequence[0].NumberOfContourPoints = 1
    (root / "rs.dcm").write_bytes(to_bytes(ds))
    cli("ingest", str(root), "--out", str(tmp_path / "out"))
    with engine.connect() as c:
        header = c.execute(text("SELECT header FROM dicom_index.instance")).scalar_one()
    contours = header["30060039"]["Value"][0]["30060040"]["Value"]
    assert contours[0]["30060050"] == {"vr": "DS", "Value": [1.0, 2.0, 3.0]}
    for item in contours[1:]:
        assert item["30060050"]["vr"] == "DS"
        assert item["30060050"]["BulkDataURI"].endswith("#30060050")
        assert "Value" not in item["30060050"]
    assert mdb.instances.find_one()["header"] == header
    assert "agree" in cli("check").stdout


def test_a_header_too_large_for_a_document_leaves_its_largest_sequence_out(
    mongo_url, mongo_db, mdb
):
    """MongoDB takes documents of 16 MiB at most. A header of very many items (an RT structure
    set of tens of thousands of contours) leaves its largest sequences out of the document and
    names them; the rest of the header stays. PostgreSQL keeps the whole header."""
    item = {"30060042": {"vr": "CS", "Value": ["CLOSED_PLANAR"]}, "30060046": {"vr": "IS"}}
    big = {"vr": "SQ", "Value": [dict(item, n={"vr": "IS", "Value": [i]}) for i in range(170_000)]}
    small = {"vr": "SQ", "Value": [item]}
    header = {"00080060": {"vr": "CS", "Value": ["RTSTRUCT"]}, "30060039": big, "30060020": small}
    row = {
        "sop_uid": "1.2.3.4",
        "series_uid": "1.2.3",
        "study_uid": "1.2",
        "patient_id": "DI-X",
        "modality": "RTSTRUCT",
        "study_date": None,
        "sop_class_uid": None,
        "instance_number": 1,
        "transfer_syntax_uid": None,
        "rows": None,
        "columns": None,
        "number_of_frames": None,
        "run_id": 1,
        "output_id": None,
        "copy_path": "a/b/c.dcm",
        "copy_sha256": "0" * 64,
        "copy_bytes": 30_000_000,
        "header": header,
    }
    assert len(bson.encode(header)) > 16 * 1024 * 1024
    sink = MongoSink(mongo_url, mongo_db)
    try:
        sink.ensure_schema()
        sink.write(MongoDocs([mongo.instance_doc(row)], [], []))
    finally:
        sink.close()
    doc = mdb.instances.find_one({"_id": "1.2.3.4"})
    assert doc["header_omitted"] == ["30060039"]
    assert doc["header"] == {"00080060": header["00080060"], "30060020": small}
    small_copy = mongo.instance_doc({**row, "copy_bytes": 500_000, "header": {"x": small}})
    assert "header_omitted" not in small_copy  # not measured: a copy this small cannot hold it
