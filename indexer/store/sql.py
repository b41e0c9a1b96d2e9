"""Batched writes, upserts and read-only queries on the `dicom_index` schema."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Engine,
    Row,
    Select,
    and_,
    delete,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import InstrumentedAttribute, Session

from indexer.errors import KeyFileError, StoreError
from indexer.records import Failure, Outcome
from indexer.store.models import (
    INDEX_SCHEMA,
    FileError,
    IndexMeta,
    IngestBatch,
    IngestRun,
    Instance,
    InstanceCopy,
    Patient,
    Series,
    SourceSeen,
    Study,
)

PSEUDONYM_KEY_ID = "pseudonym_key_id"
STAGING = "pg_temp.instance_in"  # this session's instance rows on their way in


def check_pseudonym_key(s: Session, key_id: str) -> None:
    """Record the pseudonym key id on first use; refuse a different key afterwards."""
    s.execute(insert(IndexMeta).values(key=PSEUDONYM_KEY_ID, value=key_id).on_conflict_do_nothing())
    stored = s.execute(select(IndexMeta.value).where(IndexMeta.key == PSEUDONYM_KEY_ID)).scalar()
    if stored != key_id:
        raise KeyFileError(
            f"this index was built with pseudonym key {stored}, but the key file holds "
            f"{key_id}: mixing keys would give the same patient two pseudonyms"
        )


def start_run(
    s: Session, tool_version: str, profile: dict[str, Any], output_id: str | None = None
) -> int:
    """Create an ingest run row and return its id; ``output_id``: its output store's id."""
    run = IngestRun(tool_version=tool_version, profile=profile, output_id=output_id)
    s.add(run)
    s.flush()
    return run.id


def finish_run(s: Session, run_id: int, status: str, counts: dict[str, int]) -> None:
    """Store the final counts and status of a run."""
    s.execute(
        update(IngestRun)
        .where(IngestRun.id == run_id)
        .values(status=status, finished_at=func.now(), **counts)
    )


def _dedupe(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: dict[Any, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(r[key], r)
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class Upserted:
    """What a batch's upsert did: instances new, and those indexed before with other content."""

    new: int
    conflicts: set[str]  # indexed from another source (or another copy): the caller records
    replaced: set[str]  # copies the same source made here under other rules, replaced


LEVELS: tuple[tuple[type[Any], str, str], ...] = (
    (Patient, "patient", "patient_id"),
    (Study, "study", "study_uid"),
    (Series, "series", "series_uid"),
)


def upsert_index(
    s: Session, outcomes: Sequence[Outcome], run_id: int, output_id: str | None = None
) -> Upserted:
    """Insert patients, studies, series and instances not yet indexed.

    An instance indexed before with other content (another copy's digest) is a conflict,
    which the caller records, never an overwrite; but where the outcome replaces that very
    copy (``Outcome.replaces``: the same source's copy, made under other rules or settings),
    its rows are replaced, with those of its patient, study and series.
    Re-ingesting the same object changes nothing (keyed pseudonyms make the same keys), but
    for its copy in ``output_id`` when that is not where its first copy went: recorded, with
    its own digest where the same source made it under other rules or settings (the rows
    stay the first copy's).
    """
    if not outcomes:
        return Upserted(0, set(), set())
    for model, attr, key in LEVELS:
        rows = _dedupe([getattr(o.record, attr) for o in outcomes], key)
        s.execute(insert(model).on_conflict_do_nothing(), rows)
    rows = _dedupe([o.record.instance for o in outcomes], "sop_uid")
    new = _insert_instances(s, rows)
    known = [r["sop_uid"] for r in rows if r["sop_uid"] not in new]
    if not known:
        return Upserted(len(new), set(), set())
    held = {
        r.sop_uid: r
        for r in s.execute(
            select(
                Instance.sop_uid,
                Instance.copy_sha256,
                Instance.source_id,
                Instance.source_digest,
                IngestRun.output_id,
                InstanceCopy.source_id.label("further_source"),  # of its copy here, if further
                InstanceCopy.source_digest.label("further_digest"),
            )
            .join(IngestRun, IngestRun.id == Instance.run_id, isouter=True)
            .outerjoin(
                InstanceCopy,
                and_(InstanceCopy.sop_uid == Instance.sop_uid, InstanceCopy.output_id == output_id),
            )
            .where(Instance.sop_uid.in_(known))
        )
    }
    conflicts: set[str] = set()
    replaced: list[Outcome] = []
    further: list[Outcome] = []
    for o in outcomes:
        uid = o.record.instance["sop_uid"]
        kind = "new" if uid in new else _known_as(o, held.get(uid), output_id)
        if kind == "conflict":
            conflicts.add(uid)
        elif kind == "replaced":
            replaced.append(o)
        elif kind == "further":
            further.append(o)
    if replaced:
        _replace_rows(s, replaced)
    if further and output_id is not None:
        _record_further_copies(s, further, run_id, output_id)
    return Upserted(
        len(new),
        conflicts,
        {o.record.instance["sop_uid"] for o in replaced}
        | {
            o.record.instance["sop_uid"]
            for o in further
            if o.replaces not in (None, o.record.instance["copy_sha256"])
        },
    )


def _known_as(o: Outcome, have: Row[*tuple[Any, ...]] | None, output_id: str | None) -> str:
    """What an outcome of an instance indexed before is to the instance's row ``have``.

    The same copy, one replacing it, a further copy (``have``'s first copy is in another
    output), or a conflict. ``have``: digest, source and its bytes' digest, the first copy's
    output, and the source of its further copy in this output and its digest, if one was
    recorded. A source elsewhere with the bytes of the one that made a copy (an archive
    moved) is that source.
    """
    sha = o.record.instance["copy_sha256"]
    if have is None:
        return "conflict"
    moved = _same_bytes(o, have.source_digest)
    if output_id is not None and have.output_id != output_id:  # its first copy elsewhere
        same = (
            have.copy_sha256 == sha
            or o.source_id in (have.source_id, have.further_source)
            or moved
            or _same_bytes(o, have.further_digest)
        )
        return "further" if same else "conflict"
    if have.copy_sha256 == sha:
        return "same"
    if (have.copy_sha256, have.source_id) == (o.replaces, o.source_id) or moved:
        return "replaced"  # (moved: the copy there is this one, written in its place)
    return "conflict"


def _same_bytes(o: Outcome, digest: str | None) -> bool:
    """Whether ``o``'s source has the bytes whose digest is ``digest`` (None: not known)."""
    return digest is not None and o.record.instance.get("source_digest") == digest


def _replace_rows(s: Session, outcomes: Sequence[Outcome]) -> None:
    """Replace these outcomes' rows at every level (their instances' are in the staging table)."""
    for model, attr, key in LEVELS:
        rows = _dedupe([getattr(o.record, attr) for o in outcomes], key)
        stmt = insert(model)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=[key], set_={c: stmt.excluded[c] for c in rows[0] if c != key}
            ),
            rows,
        )
    raw = _raw(s)
    columns = [c for c in INSTANCE_COLUMNS if c != "sop_uid"]
    with raw.cursor() as cur:
        cur.execute(
            f"UPDATE {INDEX_SCHEMA}.instance AS i SET ({', '.join(columns)}) = "
            f"({', '.join('n.' + c for c in columns)}) FROM {STAGING} AS n "
            "WHERE i.sop_uid = n.sop_uid AND i.sop_uid = ANY(%s)",
            ([o.record.instance["sop_uid"] for o in outcomes],),
        )


def _record_further_copies(
    s: Session, outcomes: Sequence[Outcome], run_id: int, output_id: str
) -> None:
    """Record ``output_id`` as holding these copies (their first is elsewhere), and of what.

    A copy recorded before keeps its row, but for the digest, size and source of a copy
    replacing it.
    """
    rows = _dedupe(
        [
            {
                "sop_uid": o.record.instance["sop_uid"],
                "output_id": output_id,
                "run_id": run_id,
                "copy_sha256": o.record.instance["copy_sha256"],
                "copy_bytes": o.record.instance["copy_bytes"],
                "source_id": o.source_id,
                "source_digest": o.record.instance.get("source_digest"),
            }
            for o in outcomes
        ],
        "sop_uid",
    )
    stmt = insert(InstanceCopy)
    changed = ("run_id", "copy_sha256", "copy_bytes", "source_id", "source_digest")
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=["sop_uid", "output_id"],
            set_={c: stmt.excluded[c] for c in changed},
            where=InstanceCopy.copy_sha256 != stmt.excluded.copy_sha256,
        ),
        rows,
    )


INSTANCE_COLUMNS = tuple(c.name for c in Instance.__table__.columns if c.name != "created_at")
_COLUMNS = ", ".join(INSTANCE_COLUMNS)


def _insert_instances(s: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """COPY instance rows (header as JSON text) in, keep those not indexed yet; their UIDs.

    COPY into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING: several times
    faster than a multi-row INSERT, whose parameters the driver converts one by one.
    """
    raw = _raw(s)
    with raw.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} "  # once per connection
            f"(LIKE {INDEX_SCHEMA}.instance INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY {STAGING} ({_COLUMNS}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row([r[c] for c in INSTANCE_COLUMNS])
        cur.execute(
            f"INSERT INTO {INDEX_SCHEMA}.instance ({_COLUMNS}) SELECT {_COLUMNS} FROM {STAGING} "
            "ON CONFLICT DO NOTHING RETURNING sop_uid"
        )
        return {u for (u,) in cur.fetchall()}


def _raw(s: Session) -> psycopg.Connection[Any]:
    """The session's psycopg connection (for COPY)."""
    raw = s.connection().connection.dbapi_connection
    if raw is None:  # pragma: no cover - a live pooled connection always has one
        raise StoreError("no database connection")
    return cast("psycopg.Connection[Any]", raw)


def record_failures(s: Session, run_id: int, failures: Sequence[Failure]) -> None:
    """One row per skipped or failed file: source id, reason code, PHI-free message."""
    if failures:
        s.execute(
            insert(FileError),
            [
                {
                    "run_id": run_id,
                    "source_id": f.source_id,
                    "outcome": f.outcome,
                    "reason": f.reason,
                    "message": f.message,
                }
                for f in failures
            ],
        )


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Columns and rows of a read-only query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def read_only_query(engine: Engine, query: str, role: str) -> QueryResult:
    """Run one statement as the reader role in a read-only transaction on `dicom_index`.

    The reader role has SELECT on `dicom_index` only, so the vault stays out of reach.
    """
    with read_only_rows(engine, query, role) as (columns, rows):
        return QueryResult(columns, list(rows))


STREAM_ROWS = 1000  # rows the server sends at a time


@contextlib.contextmanager
def read_only_rows(
    engine: Engine, query: str, role: str
) -> Iterator[tuple[list[str], Iterator[tuple[Any, ...]]]]:
    """``read_only_query``'s columns and rows, the rows streamed as they come, never all held.

    One statement only: the query goes by the extended protocol, which takes no second one.
    An error of the server, before the first row or later, is a StoreError with its first
    line (the reader sees de-identified values only).
    """
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        if raw is None:  # pragma: no cover - a live pooled connection always has one
            raise StoreError("no database connection")
        try:
            with raw.cursor() as cur:  # type: ignore[attr-defined]
                # psycopg has begun a transaction already: make it read-only first
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(f'SET LOCAL ROLE "{role}"')
                cur.execute("SET LOCAL search_path = dicom_index")
                stream = cur.stream(query, size=STREAM_ROWS)
                try:
                    first = next(stream, None)
                    if first is not None:
                        columns = [d.name for d in cur.description or ()]
                    else:  # no row came, nor the columns' names: the statement can tell them
                        columns = _column_names(cast("psycopg.Connection[Any]", raw), query)
                    yield columns, _rows(first, stream)
                finally:
                    # a reader that stops early (^C, `| head`, a full disk) leaves the stream
                    # open, holding the connection's lock: the rollback below would wait on it
                    # for ever. Closed, psycopg cancels the query and lets the lock go.
                    stream.close()
            raw.rollback()
        except psycopg.Error as e:
            raw.rollback()
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise StoreError(f"query failed: {msg}") from None


def _column_names(raw: psycopg.Connection[Any], query: str) -> list[str]:
    """The names of the columns ``query`` returns, from its description: it is not run."""
    pgconn, name = raw.pgconn, b"dicom_index_columns"
    if pgconn.prepare(name, query.encode()).status != psycopg.pq.ExecStatus.COMMAND_OK:
        return []
    try:
        described = pgconn.describe_prepared(name)
        return [(described.fname(i) or b"").decode() for i in range(described.nfields)]
    finally:
        pgconn.exec_(b"DEALLOCATE " + name)


def _rows(first: Any, rest: Iterator[Any]) -> Iterator[tuple[Any, ...]]:  # noqa: ANN401
    if first is None:
        return
    yield tuple(first)
    for row in rest:
        yield tuple(row)


def create_batch(s: Session, run_id: int, sop_uids: Sequence[str]) -> int:
    """Record a committed batch, MongoDB write pending; returns its id."""
    batch = IngestBatch(run_id=run_id, sop_uids=list(sop_uids))
    s.add(batch)
    s.flush()
    return batch.id


def pending_batches(s: Session, limit: int | None = None) -> list[tuple[int, list[str]]]:
    """Batches whose MongoDB write has not completed, oldest first."""
    q = (
        select(IngestBatch.id, IngestBatch.sop_uids)
        .where(IngestBatch.mongo_done.is_(False))
        .order_by(IngestBatch.id)
    )
    if limit is not None:
        q = q.limit(limit)
    return [(r.id, list(r.sop_uids)) for r in s.execute(q)]


def count_pending_batches(s: Session) -> int:
    """How many batches still wait for their MongoDB write."""
    q = select(func.count()).select_from(IngestBatch).where(IngestBatch.mongo_done.is_(False))
    return int(s.execute(q).scalar_one())


def mark_batches_done(s: Session, batch_ids: Sequence[int]) -> None:
    """Record that these batches' MongoDB writes completed."""
    s.execute(update(IngestBatch).where(IngestBatch.id.in_(batch_ids)).values(mongo_done=True))


def last_batch_id(s: Session) -> int | None:
    """The newest batch's id; None before the first."""
    return cast("int | None", s.execute(select(func.max(IngestBatch.id))).scalar_one())


def mark_batches_done_through(s: Session, batch_id: int) -> None:
    """Record that the MongoDB writes of every batch up to ``batch_id`` completed."""
    s.execute(
        update(IngestBatch)
        .where(IngestBatch.id <= batch_id, IngestBatch.mongo_done.is_(False))
        .values(mongo_done=True)
    )


_INSTANCE_ROWS = text("""
    SELECT i.sop_uid, i.series_uid, i.study_uid, i.patient_id, se.modality, st.study_date,
           i.sop_class_uid, i.instance_number, i.transfer_syntax_uid, i.rows, i.columns,
           i.number_of_frames, i.run_id, r.output_id, i.copy_path, i.copy_sha256,
           i.copy_bytes, i.header
    FROM dicom_index.instance i
    JOIN dicom_index.series se USING (series_uid)
    JOIN dicom_index.study st ON st.study_uid = i.study_uid
    LEFT JOIN dicom_index.ingest_run r ON r.id = i.run_id
    WHERE i.sop_uid = ANY(:ids)
""")
_SERIES_ROWS = text("""
    SELECT se.series_uid, se.study_uid, st.patient_id, se.modality, se.series_number,
           se.series_description, se.body_part_examined, count(i.sop_uid) AS n_instances
    FROM dicom_index.series se
    JOIN dicom_index.study st USING (study_uid)
    LEFT JOIN dicom_index.instance i ON i.series_uid = se.series_uid
    WHERE se.series_uid = ANY(:ids)
    GROUP BY se.series_uid, st.patient_id
""")
_STUDY_ROWS = text("""
    SELECT st.study_uid, st.patient_id, st.study_date, st.study_time, st.accession_number,
           st.study_id, st.study_description,
           count(DISTINCT se.series_uid) AS n_series, count(i.sop_uid) AS n_instances,
           coalesce(array_agg(DISTINCT se.modality) FILTER (WHERE se.modality IS NOT NULL),
                    '{}') AS modalities
    FROM dicom_index.study st
    LEFT JOIN dicom_index.series se ON se.study_uid = st.study_uid
    LEFT JOIN dicom_index.instance i ON i.series_uid = se.series_uid
    WHERE st.study_uid = ANY(:ids)
    GROUP BY st.study_uid
""")


@dataclass(frozen=True, slots=True)
class LevelRows:
    """Index rows of instances and of the series and studies they belong to."""

    instances: list[dict[str, Any]]
    series: list[dict[str, Any]]
    studies: list[dict[str, Any]]


def rows_for_documents(
    s: Session,
    sop_uids: Sequence[str],
    series_uids: Iterable[str] = (),
    study_uids: Iterable[str] = (),
) -> LevelRows:
    """Everything the MongoDB documents of these instances need, as plain dicts.

    With the rows of further series and studies (those instances withdrawn were in).
    """
    instances = [dict(m) for m in s.execute(_INSTANCE_ROWS, {"ids": list(sop_uids)}).mappings()]
    series_ids = sorted({r["series_uid"] for r in instances} | set(series_uids))
    study_ids = sorted({r["study_uid"] for r in instances} | set(study_uids))
    series = [dict(m) for m in s.execute(_SERIES_ROWS, {"ids": series_ids}).mappings()]
    studies = [dict(m) for m in s.execute(_STUDY_ROWS, {"ids": study_ids}).mappings()]
    return LevelRows(instances, series, studies)


def level_counts(s: Session) -> dict[str, int]:
    """Rows of instance, series and study."""
    return {
        name: int(s.execute(select(func.count()).select_from(model)).scalar_one())
        for name, model in (("instances", Instance), ("series", Series), ("studies", Study))
    }


def sop_uids_after(s: Session, after: str | None, limit: int) -> list[str]:
    """Instance UIDs in order, the next ``limit`` after ``after``: a walk over all of them."""
    q = select(Instance.sop_uid).order_by(Instance.sop_uid).limit(limit)
    if after is not None:
        q = q.where(Instance.sop_uid > after)
    return list(s.execute(q).scalars())


LEVEL_KEYS = {
    "instances": Instance.sop_uid,
    "series": Series.series_uid,
    "studies": Study.study_uid,
}


def present(s: Session, level: str, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` have a row at ``level`` (instances, series or studies)."""
    key = LEVEL_KEYS[level]
    return set(s.execute(select(key).where(key.in_(list(ids)))).scalars())


def sample_sop_uids(s: Session, n: int) -> list[str]:
    """A random sample of instance UIDs."""
    q = select(Instance.sop_uid).order_by(func.random()).limit(n)
    return list(s.execute(q).scalars())


@dataclass(frozen=True, slots=True)
class KnownSource:
    """What the index holds for a source seen before."""

    copy_path: str
    copy_bytes: int
    sop_uid: str
    study_uid: str
    series_uid: str
    video_rules: int = 0  # the video rules version its copy was made under; 0: no video


def known_sources(
    s: Session, fingerprints: Sequence[str], output_id: str | None = None
) -> dict[str, KnownSource]:
    """Fingerprint -> what was indexed from it, for sources indexed before.

    With ``output_id``: only those whose copy the index places in that output.
    """
    if not fingerprints:
        return {}
    q = (
        select(
            SourceSeen.fingerprint,
            Instance.copy_path,
            _copy_column(Instance.copy_bytes, output_id),
            Instance.sop_uid,
            Instance.study_uid,
            Instance.series_uid,
            SourceSeen.video_rules,
        )
        .join(Instance, Instance.sop_uid == SourceSeen.sop_uid)
        .where(SourceSeen.fingerprint.in_(list(fingerprints)))
    )
    if output_id is not None:
        q = _with_further(q, output_id).where(_placed_in(output_id))
    return {
        r.fingerprint: KnownSource(
            r.copy_path, int(r.copy_bytes), r.sop_uid, r.study_uid, r.series_uid, r.video_rules
        )
        for r in s.execute(q)
    }


def copies_of_bytes(
    s: Session, wanted: Mapping[str, str | None], output_id: str
) -> dict[str, list[tuple[str, str, str]]]:
    """Source digest -> (source id, name, SHA-256) of the copies in this output of those bytes.

    ``wanted``: digest -> the name of the copy its source has now (None: none, the rules
    refuse it), which is left out. The sources that made them may lie elsewhere now (an
    archive moved); their copies are withdrawn as their own source's would be.
    """
    if not wanted:
        return {}
    found: dict[str, list[tuple[str, str, str]]] = {}
    for r in s.execute(_copies_made_of(list(wanted), output_id)):
        if r.copy_path != wanted[r.source_digest]:
            found.setdefault(r.source_digest, []).append((r.source_id, r.copy_path, r.copy_sha256))
    return found


def _copies_made_of(
    digests: Sequence[str], output_id: str, sop_uid: str | None = None
) -> CompoundSelect[str | None, str, str, str]:
    """The copies in this output made of these bytes: digest, source id, name, SHA-256.

    Instances' first copies, and further ones; of one instance, with ``sop_uid``.
    """
    first = (
        select(Instance.source_digest, Instance.source_id, Instance.copy_path, Instance.copy_sha256)
        .join(IngestRun, IngestRun.id == Instance.run_id)
        .where(Instance.source_digest.in_(digests), IngestRun.output_id == output_id)
    )
    further = (
        select(
            InstanceCopy.source_digest,
            InstanceCopy.source_id,
            Instance.copy_path,
            InstanceCopy.copy_sha256,
        )
        .join(Instance, Instance.sop_uid == InstanceCopy.sop_uid)
        .where(InstanceCopy.source_digest.in_(digests), InstanceCopy.output_id == output_id)
    )
    if sop_uid is not None:
        first = first.where(Instance.sop_uid == sop_uid)
        further = further.where(InstanceCopy.sop_uid == sop_uid)
    return first.union_all(further)


def copy_made_of(s: Session, name: str, digest: str, output_id: str) -> str | None:
    """The SHA-256 of the copy ``name`` in this output if a source of these bytes made it.

    ``digest``: a source's (``indexer.content``). The instance's first copy, or its further
    copy here. A copy is named after its instance's UIDs, the SOP Instance UID last.
    """
    sop_uid = name.rsplit("/", 1)[-1].removesuffix(".dcm")
    rows = s.execute(_copies_made_of([digest], output_id, sop_uid))
    return next((r.copy_sha256 for r in rows if r.copy_path == name), None)


@dataclass(frozen=True, slots=True)
class EarlierCopy:
    """A copy indexed from a source in this output (its instance's first, or a further one)."""

    name: str
    sha256: str
    same_version: bool  # made from the very version of the source there now


def replaceable_copies(
    s: Session, sources: Mapping[str, str | None], output_id: str
) -> dict[str, tuple[EarlierCopy, ...]]:
    """Source id -> the copies indexed from it in this output, first or further copies.

    ``sources``: source id -> its key (location and version, ``Ingest.source_key``). A source
    that is not skipped as unchanged, but was indexed here before, replaces these with its
    new copy; those made from the same version (under other rules or settings) are also
    withdrawn where the rules in force refuse it, or its new copy has another name.
    """
    if not sources:
        return {}
    first = (
        select(Instance.source_id, Instance.sop_uid, Instance.copy_path, Instance.copy_sha256)
        .join(IngestRun, IngestRun.id == Instance.run_id)
        .where(Instance.source_id.in_(list(sources)), IngestRun.output_id == output_id)
    )
    further = (
        select(
            InstanceCopy.source_id, Instance.sop_uid, Instance.copy_path, InstanceCopy.copy_sha256
        )
        .join(Instance, Instance.sop_uid == InstanceCopy.sop_uid)
        .where(InstanceCopy.source_id.in_(list(sources)), InstanceCopy.output_id == output_id)
    )
    rows = s.execute(first.union_all(further)).all()
    if not rows:
        return {}
    made = set(
        s.execute(
            select(SourceSeen.source_key, SourceSeen.sop_uid).where(
                SourceSeen.source_key.in_({k for r in rows if (k := sources[r.source_id])})
            )
        ).tuples()
    )
    found: dict[str, tuple[EarlierCopy, ...]] = {}
    for r in rows:
        same = (sources[r.source_id], r.sop_uid) in made
        copy = EarlierCopy(r.copy_path, r.copy_sha256, same)
        found[r.source_id] = (*found.get(r.source_id, ()), copy)
    return found


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """What ``withdraw`` took away: how many copies, and the instances it changed."""

    sop_uids: list[str]  # rows gone, or another first copy: their documents to be written
    copies: int  # the instances' first copies, and further ones (their instances stay)


def withdraw(s: Session, copies: Sequence[tuple[str, str, str]], output_id: str) -> Withdrawn:
    """Delete the index's record of these (source id, copy name, SHA-256) in this output.

    Where a copy is an instance's first (made in this output), the instance is deleted, with
    its fingerprints, and a series, study and patient left with nothing under them; but an
    instance with further copies in other outputs (made under their runs' settings, which
    this run cannot judge) stays, its earliest further copy its first now (``_promote``).
    Where it is a further copy, only its row goes.
    """
    if not copies:
        return Withdrawn([], 0)
    further = (
        s.execute(
            select(InstanceCopy.sop_uid)
            .join(Instance, Instance.sop_uid == InstanceCopy.sop_uid)
            .where(
                tuple_(InstanceCopy.source_id, Instance.copy_path, InstanceCopy.copy_sha256).in_(
                    copies
                ),
                InstanceCopy.output_id == output_id,
            )
        )
        .scalars()
        .all()
    )
    if further:
        s.execute(
            delete(InstanceCopy).where(
                InstanceCopy.sop_uid.in_(further), InstanceCopy.output_id == output_id
            )
        )
    rows = s.execute(
        select(Instance.sop_uid, Instance.series_uid, Instance.study_uid, Instance.patient_id)
        .join(IngestRun, IngestRun.id == Instance.run_id)
        .where(
            tuple_(Instance.source_id, Instance.copy_path, Instance.copy_sha256).in_(copies),
            IngestRun.output_id == output_id,
        )
    ).all()
    if not rows:
        return Withdrawn([], len(further))
    promoted = _promote(s, [r.sop_uid for r in rows], output_id)
    rows = [r for r in rows if r.sop_uid not in promoted]
    if not rows:
        return Withdrawn(sorted(promoted), len(further) + len(promoted))
    uids = [r.sop_uid for r in rows]
    series = sorted({r.series_uid for r in rows})
    studies = sorted({r.study_uid for r in rows})
    patients = sorted({r.patient_id for r in rows})
    s.execute(delete(InstanceCopy).where(InstanceCopy.sop_uid.in_(uids)))
    s.execute(delete(SourceSeen).where(SourceSeen.sop_uid.in_(uids)))
    s.execute(delete(Instance).where(Instance.sop_uid.in_(uids)))
    s.execute(
        delete(Series).where(
            Series.series_uid.in_(series),
            ~select(Instance.sop_uid).where(Instance.series_uid == Series.series_uid).exists(),
        )
    )
    s.execute(
        delete(Study).where(
            Study.study_uid.in_(studies),
            ~select(Series.series_uid).where(Series.study_uid == Study.study_uid).exists(),
        )
    )
    s.execute(
        delete(Patient).where(
            Patient.patient_id.in_(patients),
            ~select(Study.study_uid).where(Study.patient_id == Patient.patient_id).exists(),
        )
    )
    return Withdrawn(uids + sorted(promoted), len(uids) + len(further) + len(promoted))


def _promote(s: Session, sop_uids: Sequence[str], output_id: str) -> set[str]:
    """Give instances whose first copy is withdrawn their earliest further copy as first.

    Those with further copies: that copy's run, digest, size and source become the
    instance's, and its fingerprints from runs into ``output_id`` go. Returns their SOP
    Instance UIDs. The rows stay those the withdrawn copy gave (the same source, or the same
    content), until the new first copy's output is run again.
    """
    heirs = s.execute(
        select(
            InstanceCopy.sop_uid,
            InstanceCopy.output_id,
            InstanceCopy.run_id,
            InstanceCopy.copy_sha256,
            InstanceCopy.copy_bytes,
            InstanceCopy.source_id,
        )
        .where(InstanceCopy.sop_uid.in_(list(sop_uids)))
        .order_by(InstanceCopy.sop_uid, InstanceCopy.run_id, InstanceCopy.output_id)
        .distinct(InstanceCopy.sop_uid)
    ).all()
    if not heirs:
        return set()
    s.execute(
        update(Instance),
        [
            {
                "sop_uid": h.sop_uid,
                "run_id": h.run_id,
                "copy_sha256": h.copy_sha256,
                "copy_bytes": h.copy_bytes,
                "source_id": h.source_id,
            }
            for h in heirs
        ],
    )
    s.execute(
        delete(InstanceCopy).where(
            tuple_(InstanceCopy.sop_uid, InstanceCopy.output_id).in_(
                [(h.sop_uid, h.output_id) for h in heirs]
            )
        )
    )
    uids = {h.sop_uid for h in heirs}
    s.execute(
        delete(SourceSeen).where(
            SourceSeen.sop_uid.in_(uids),
            SourceSeen.run_id.in_(select(IngestRun.id).where(IngestRun.output_id == output_id)),
        )
    )
    return uids


Seen = tuple[str, str, str | None, int]
"""A source indexed: fingerprint, SOP Instance UID, source key, video rules version (0: none)."""


def record_sources(s: Session, run_id: int, seen: Sequence[Seen]) -> None:
    """Remember the sources indexed in this batch (``Seen``).

    A source indexed again under the same fingerprint (its copy was missing, or it is video
    indexed under other video rules) records the video rules its new copy was made under.
    """
    if seen:
        stmt = insert(SourceSeen)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=[SourceSeen.fingerprint],
                set_={"video_rules": stmt.excluded.video_rules},
                where=SourceSeen.video_rules != stmt.excluded.video_rules,
            ),
            [
                {
                    "fingerprint": f,
                    "sop_uid": u,
                    "source_key": k,
                    "run_id": run_id,
                    "video_rules": v,
                }
                for f, u, k, v in seen
            ],
        )


@dataclass(frozen=True, slots=True)
class IndexedCopy:
    """What the index says of one copy: its name in its output, size and digest."""

    sop_uid: str
    name: str
    size: int
    sha256: str


def _placed_in(output_id: str | None) -> ColumnElement[bool]:
    """Instances with a copy in ``output_id``: their first, or a further one.

    None: instances whose first copy went where a run did not record (before runs did).
    """
    first = Instance.run_id.in_(select(IngestRun.id).where(IngestRun.output_id == output_id))
    if output_id is None:
        return first
    further = select(InstanceCopy.sop_uid).where(InstanceCopy.output_id == output_id)
    return or_(first, Instance.sop_uid.in_(further))


def _copy_column(
    column: InstrumentedAttribute[Any], output_id: str | None
) -> ColumnElement[Any] | InstrumentedAttribute[Any]:
    """An instance's ``column`` (copy_bytes, copy_sha256) as of its copy in ``output_id``.

    A further copy's own (``_with_further``), else the first's.
    """
    if output_id is None:
        return column
    mine = getattr(InstanceCopy, column.key)
    return func.coalesce(mine, column).label(column.key)


def _with_further(q: Select[Any], output_id: str) -> Select[Any]:
    """``q`` (of instances) joined to their further copies' rows in ``output_id``, if any."""
    return q.outerjoin(
        InstanceCopy,
        and_(InstanceCopy.sop_uid == Instance.sop_uid, InstanceCopy.output_id == output_id),
    )


def indexed_copies(s: Session, output_id: str, chunk: int = 2000) -> Iterator[IndexedCopy]:
    """Every copy the index describes in the output ``output_id``, streamed (by SOP UID)."""
    stmt = _with_further(
        select(
            Instance.sop_uid,
            Instance.copy_path,
            _copy_column(Instance.copy_bytes, output_id),
            _copy_column(Instance.copy_sha256, output_id),
        ),
        output_id,
    )
    stmt = stmt.where(_placed_in(output_id)).order_by(Instance.sop_uid)
    for r in s.execute(stmt, execution_options={"yield_per": chunk}):
        yield IndexedCopy(r.sop_uid, r.copy_path, int(r.copy_bytes), r.copy_sha256)


def count_indexed_copies(s: Session, output_id: str | None) -> int:
    """How many instances have a copy in ``output_id`` (None: runs that recorded none)."""
    stmt = select(func.count()).select_from(Instance).where(_placed_in(output_id))
    return int(s.execute(stmt).scalar_one())


def described_names(s: Session, output_id: str, sop_uids: Sequence[str]) -> set[str]:
    """Of these SOP Instance UIDs, the copy names the index places (or may) in ``output_id``.

    May: a run that recorded no output (before runs did) may have written to it.
    """
    stmt = select(Instance.copy_path).where(
        or_(_placed_in(output_id), _placed_in(None)), Instance.sop_uid.in_(list(sop_uids))
    )
    return set(s.execute(stmt).scalars())
