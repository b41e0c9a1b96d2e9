"""The MongoDB sink: one document per instance, plus study and series documents.

Documents are built from PostgreSQL rows (the source of truth) after the batch commits and
written with unordered bulk upserts, journaled (``MongoSink.write``), so writing the same
batch twice leaves the index's documents as they were, and a batch MongoDB acknowledged
stays written if its server is killed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
from pymongo import ASCENDING, MongoClient, ReplaceOne, WriteConcern
from pymongo.database import Database as MongoDatabase
from pymongo.errors import CollectionInvalid, PyMongoError

from indexer.durable import private_dir
from indexer.errors import StoreError
from indexer.resources import load_schema
from indexer.store import mongo_server

logger = logging.getLogger(__name__)

INSTANCES, SERIES, STUDIES = "instances", "series", "studies"
WRITE_MARKS = "write_marks"  # one counter: each batch's last write, journaled (``write``)
VALIDATORS = {
    INSTANCES: "mongo-instance.schema.json",
    SERIES: "mongo-series.schema.json",
    STUDIES: "mongo-study.schema.json",
    WRITE_MARKS: "mongo-write-mark.schema.json",
}
INDEXES: dict[str, list[list[tuple[str, int]]]] = {
    INSTANCES: [
        [("series_uid", ASCENDING)],
        [("study_uid", ASCENDING)],
        [("patient_id", ASCENDING), ("modality", ASCENDING)],
        [("run_id", ASCENDING)],
    ],
    SERIES: [[("study_uid", ASCENDING)], [("patient_id", ASCENDING), ("modality", ASCENDING)]],
    STUDIES: [
        [("patient_id", ASCENDING)],
        [("modalities", ASCENDING), ("study_month", ASCENDING)],
        [("accession_number", ASCENDING)],
    ],
    WRITE_MARKS: [],
}


# The embedded server's storage cache (WiredTiger). Its own default, 1 GB, let the server
# grow with the database (≈ 19 MB per 2,000 instances stored) towards 1.2 GB; at 64 MB the
# largest process of an ingest stayed at 153 MB after 10,000, and ingest is as fast.
EMBEDDED_CACHE = "64M"


class MongoUnavailableError(StoreError):
    """The MongoDB server cannot be reached or refused a write; PostgreSQL has the data."""

    code = "mongo"


@dataclass(frozen=True, slots=True)
class MongoDocs:
    """The documents for one batch: instances and the studies and series they touch."""

    instances: list[dict[str, Any]]
    series: list[dict[str, Any]]
    studies: list[dict[str, Any]]


def _error(action: str, e: PyMongoError) -> MongoUnavailableError:
    return MongoUnavailableError(f"MongoDB {action} failed ({type(e).__name__})")


class MongoSink:
    """The de-identified index in MongoDB."""

    def __init__(self, url: str, database: str, *, timeout_ms: int = 5000) -> None:
        self.client: MongoClient[dict[str, Any]] = MongoClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=max(timeout_ms * 6, 30_000),
            tz_aware=True,
        )
        self.db: MongoDatabase[dict[str, Any]] = self.client[database]
        self._journaled = self.client.get_database(database, write_concern=WriteConcern(j=True))

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    def ensure_schema(self) -> None:
        """Create collections with their $jsonSchema validators and indexes (idempotent)."""
        try:
            existing = set(self.db.list_collection_names())
            for name, schema_file in VALIDATORS.items():
                validator = {"$jsonSchema": _mongo_schema(load_schema(schema_file))}
                if name in existing:
                    self.db.command("collMod", name, validator=validator, validationLevel="strict")
                else:
                    with contextlib.suppress(CollectionInvalid):
                        self.db.create_collection(
                            name, validator=validator, validationLevel="strict"
                        )
                for keys in INDEXES[name]:
                    self.db[name].create_index(keys)
        except PyMongoError as e:
            raise _error("set-up", e) from None

    def write(self, docs: MongoDocs) -> None:
        """Upsert every document of a batch (unordered bulk writes); on disk when it returns.

        PostgreSQL marks the batch written once this returns, so the acknowledgement must
        outlast the server: without the journal, acknowledged writes sit in the storage
        engine's log buffer a while (a killed SecantusDB server lost the last 4 to 20 of 500
        documents; a mongod loses up to a journal interval's on a power cut). The journal is
        written in order, so the batch's last write alone waits for it (``j``): one wait a
        batch, where journaling each document made SecantusDB sync once per document (1,003
        instances' documents: 5.4-8.1 s all journaled, 4.7-5.0 s with no journal). That last
        write raises a counter in ``write_marks``: SecantusDB syncs nothing for a write that
        changes no document, so a journaled study that stayed the same (`sync --all`
        rewriting lost instances) let a killed server lose the repaired ones again.
        """
        try:
            for collection, items in (
                (INSTANCES, docs.instances),
                (SERIES, docs.series),
                (STUDIES, docs.studies),
            ):
                if items:
                    self.db[collection].bulk_write(
                        [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in items],
                        ordered=False,
                    )
            self._mark()
        except PyMongoError as e:
            raise _error("write", e) from None

    def _mark(self) -> None:
        """Raise the write counter, journaled: on disk, with every write before it, on return."""
        self._journaled[WRITE_MARKS].update_one({"_id": "writes"}, {"$inc": {"n": 1}}, upsert=True)

    def counts(self) -> dict[str, int]:
        """Documents per collection."""
        try:
            return {n: self.db[n].count_documents({}) for n in (INSTANCES, SERIES, STUDIES)}
        except PyMongoError as e:
            raise _error("count", e) from None

    def ids_after(self, collection: str, after: str | None, limit: int) -> list[str]:
        """Document ids in order, the next ``limit`` after ``after``: a walk over all of them."""
        query = {} if after is None else {"_id": {"$gt": after}}
        try:
            found = self.db[collection].find(query, {"_id": 1}).sort("_id", ASCENDING)
            return [d["_id"] for d in found.limit(limit)]
        except PyMongoError as e:
            raise _error("read", e) from None

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Delete documents by _id; how many there were."""
        try:
            gone = self.db[collection].delete_many({"_id": {"$in": list(ids)}})
            self._mark()
            return int(gone.deleted_count)
        except PyMongoError as e:
            raise _error("delete", e) from None

    def get(self, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Documents by _id."""
        try:
            return {d["_id"]: d for d in self.db[collection].find({"_id": {"$in": list(ids)}})}
        except PyMongoError as e:
            raise _error("read", e) from None


def _mongo_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Strip JSON Schema annotations MongoDB's $jsonSchema does not accept."""
    if isinstance(schema, dict):
        return {k: _mongo_schema(v) for k, v in schema.items() if k != "$comment"}
    if isinstance(schema, list):
        return [_mongo_schema(v) for v in schema]
    return schema


def instance_doc(row: dict[str, Any]) -> dict[str, Any]:
    """The instance document from its joined index row."""
    keys = (
        "sop_uid",
        "series_uid",
        "study_uid",
        "patient_id",
        "modality",
        "study_date",
        "sop_class_uid",
        "instance_number",
        "transfer_syntax_uid",
        "rows",
        "columns",
        "number_of_frames",
        "run_id",
        "output_id",  # of the output its copy is in, at copy_path (the run's)
        "copy_path",
        "copy_sha256",
        "copy_bytes",
        "header",
    )
    doc = {"_id": row["sop_uid"], **{k: row[k] for k in keys}}
    if (row["copy_bytes"] or 0) >= CHECK_SIZE_FROM:
        _fit(doc)
    return doc


# MongoDB takes documents of at most 16 MiB (BSON), with room here for the fields besides.
DOCUMENT_LIMIT = 16 * 1024 * 1024 - 64 * 1024
# A header's JSON is at most a few times its bytes in the copy: from copies this large on,
# a document's size is measured (BSON-encoding a header of CT slice costs more than it saves).
CHECK_SIZE_FROM = 2 * 1024 * 1024


def _fit(doc: dict[str, Any]) -> None:
    """Leave the header's largest sequences out of ``doc`` until it fits in a document.

    Their tags are listed in ``header_omitted``; PostgreSQL holds the whole header. Numbers
    and text over a few KiB are bulk data already (``extract``): only a structure of very
    many items (an RT structure set of some ten thousand contours) comes this far.
    """
    if len(bson.encode(doc)) <= DOCUMENT_LIMIT:
        return
    header = dict(doc["header"])
    sizes = {
        tag: len(bson.encode({"v": value}))
        for tag, value in header.items()
        if isinstance(value, dict) and value.get("vr") == "SQ"
    }
    omitted = []
    for tag in sorted(sizes, key=lambda t: (-sizes[t], t)):
        del header[tag]
        omitted.append(tag)
        doc["header"], doc["header_omitted"] = header, sorted(omitted)
        if len(bson.encode(doc)) <= DOCUMENT_LIMIT:
            return
    doc["header"] = {}  # no sequence was the cause: a header of very many plain elements
    doc["header_omitted"] = sorted(omitted + list(header))


def series_doc(row: dict[str, Any]) -> dict[str, Any]:
    """The series document from its aggregated row."""
    keys = (
        "study_uid",
        "patient_id",
        "modality",
        "series_number",
        "series_description",
        "body_part_examined",
        "n_instances",
    )
    return {"_id": row["series_uid"], **{k: row[k] for k in keys}}


def study_doc(row: dict[str, Any]) -> dict[str, Any]:
    """The study document from its aggregated row."""
    keys = (
        "patient_id",
        "study_date",
        "study_time",
        "accession_number",
        "study_id",
        "study_description",
        "n_series",
        "n_instances",
    )
    date = row["study_date"] or ""
    month = f"{date[:4]}-{date[4:6]}" if len(date) >= 6 and date[:6].isdigit() else None  # noqa: PLR2004
    return {
        "_id": row["study_uid"],
        **{k: row[k] for k in keys},
        "modalities": sorted(m for m in row["modalities"] if m),
        "study_month": month,
    }


_STARTED: dict[Path, subprocess.Popen[bytes]] = {}  # by `prestart`, for `embedded_url`


def _start(storage: Path) -> subprocess.Popen[bytes]:
    try:
        # its files are the index: read past the server, never by others (an earlier
        # version made it 0755)
        private_dir(storage).chmod(0o700)
        return subprocess.Popen(  # noqa: S603 - our own module, by this interpreter
            [sys.executable, "-m", "indexer.store.mongo_server", str(storage), EMBEDDED_CACHE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
    except OSError as e:
        raise StoreError(
            f"could not start the embedded MongoDB server in {storage} "
            f"({type(e).__name__}); set DICOM_INDEX_MONGO_URL"
        ) from None


def prestart(state_dir: Path) -> None:
    """Start the embedded server now if none runs, to open its storage while the caller sets up.

    `embedded_url` takes its URL over.
    """
    storage = mongo_server.storage_of(state_dir)
    if (
        storage not in _STARTED
        and importlib.util.find_spec("secantus") is not None
        and mongo_server.running(storage) is None
    ):
        _STARTED[storage] = _start(storage)


def embedded_url(state_dir: Path) -> str | None:
    """The URL of the SecantusDB wire-protocol server (optional GPL extra) of ``state_dir``.

    The server (``indexer.store.mongo_server``) runs in a process of its own, started here if
    none runs, and outlives this process, as the embedded PostgreSQL server does: `dicom-index
    db stop` stops it. None when the extra is not installed.
    """
    if importlib.util.find_spec("secantus") is None:
        return None
    storage = mongo_server.storage_of(state_dir)
    child = _STARTED.pop(storage, None)
    if child is None:
        if (found := mongo_server.running(storage)) is not None:
            return found.uri
        child = _start(storage)
    assert child.stdout is not None  # noqa: S101 - piped above
    with child.stdout:
        line = child.stdout.readline().decode("ascii", "replace").strip()
    child.wait()  # the server detached from it: it ended at once
    if not line.startswith("mongodb://"):
        why = line.removeprefix("error ") or "it ended, saying nothing"
        raise StoreError(
            f"could not start the embedded MongoDB server in {storage} ({why}); see "
            f"{storage.with_name(mongo_server.LOG_FILE)}, or set DICOM_INDEX_MONGO_URL"
        )
    return line


@contextlib.contextmanager
def open_sink(
    url: str | None, database: str, *, enabled: bool, state_dir: Path, timeout_ms: int
) -> Iterator[tuple[MongoSink | None, str | None]]:
    """The configured sink, or None with the reason it is off."""
    if not enabled:
        yield None, "switched off (mongo_enabled = false)"
        return
    with contextlib.ExitStack() as stack:
        if url is None:
            url = embedded_url(state_dir)
            if url is None:
                yield (
                    None,
                    (
                        "no DICOM_INDEX_MONGO_URL, and the embedded-mongo extra "
                        "(SecantusDB) is not installed"
                    ),
                )
                return
        sink = MongoSink(url, database, timeout_ms=timeout_ms)
        stack.callback(sink.close)
        yield sink, None
