"""read -> de-identify -> write copy -> index -> vault, in batches; the only caller of store/."""

from __future__ import annotations

import array
import collections
import contextlib
import functools
import hashlib
import hmac
import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import numpy as np

from indexer import __version__, failpoints, work
from indexer.deid import RULES_VERSION, VIDEO_RULES_VERSION, Plan
from indexer.deid.video import VIDEO
from indexer.errors import DeidError, IndexerError, SourceError
from indexer.keys import Keys
from indexer.lazy import lazy
from indexer.records import Failure, Outcome, SourceFile
from indexer.sources import Walker, held_bytes, refuse_inside
from indexer.store import db, migrate, sql, vault
from indexer.store.files import LocalStore, OutputStore
from indexer.store.lookup import CopiesMadeOf
from indexer.workers import POOL_THRESHOLD
from indexer.workers import context as worker_context

if TYPE_CHECKING:
    from collections.abc import Sequence

    from indexer.store import mongo
    from indexer.store.mongo import MongoDocs, MongoSink
else:
    mongo = lazy("indexer.store.mongo")  # pymongo only when the MongoDB sink is on

logger = logging.getLogger(__name__)
T = TypeVar("T")

Progress = Callable[[int, int], None]  # (files done, bytes done)

WRITES_AHEAD = 4  # copies waiting to be written while the next files are de-identified
WRITER_SWITCH_S = 0.0002  # interpreter hand-over interval while the writer thread runs
CHUNK_FILES = 16  # files a worker takes at once: one message each way per chunk
SKIP_CHECK_CHUNK = 256  # sources looked up at once for the unchanged-file check
# bytes of compressed tars' members (read as the walk passes them) held at a stage at most:
HELD_BYTES = 32 << 20  # between the walk and the work, and in the work's window
CHUNK_HELD_BYTES = 8 << 20  # in one worker's chunk
MONGO_WRITES_AHEAD = 2  # committed batches whose MongoDB write may wait while files go on


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A source indexed before and unchanged since: skipped without reading."""

    src: SourceFile
    known: sql.KnownSource


@dataclass(slots=True)
class Summary:
    """What an ingest did; printed at the end and stored with the run."""

    run_id: int = 0
    output_id: str = ""  # the id of the output the copies went to (kept in the output)
    files_seen: int = 0
    files_indexed: int = 0
    files_already_indexed: int = 0
    files_unchanged: int = 0  # skipped without reading: indexed before, unchanged
    copies_replaced: int = 0  # made again under other rules or settings: copy and rows replaced
    copies_withdrawn: int = 0  # of the same bytes, now refused or renamed: copy and rows removed
    files_skipped: int = 0
    files_failed: int = 0
    bytes_read: int = 0
    studies: int = 0
    series: int = 0
    instances: int = 0
    seconds: float = 0.0
    status: str = "running"
    mongo: str = "off"  # off | written | pending
    mongo_pending_batches: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def files_per_second(self) -> float:
        """Throughput over the whole run."""
        return self.files_seen / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (for --json and the run row)."""
        d = asdict(self)
        d["files_per_second"] = round(self.files_per_second, 1)
        d["seconds"] = round(self.seconds, 3)
        return d


class Distinct:
    """How many distinct strings were added: the run's studies, series and instances.

    A file holding an object another file of the run holds too (or the same file listed
    twice) counts once. Each string is kept as its 64-bit hash, 8 bytes, merged into a
    sorted array of those seen once the new ones are as many: an archive of ten million
    instances holds 80 MB of them, twice that before a merge and three times during one,
    and the chance that two share a hash (one counted short) is below 1 in 300,000.
    """

    __slots__ = ("_new", "_seen")

    MERGE_AT = 1 << 16  # new hashes held before the first merge

    def __init__(self) -> None:
        self._seen = np.empty(0, np.int64)
        self._new = array.array("q")

    def add(self, value: str) -> None:
        """Count ``value`` unless it was added before."""
        self._new.append(hash(value))
        if len(self._new) >= max(self.MERGE_AT, len(self._seen)):
            self._merge()

    def _merge(self) -> None:
        if self._new:
            self._seen = np.union1d(self._seen, np.frombuffer(self._new, np.int64))
            self._new = array.array("q")

    def __len__(self) -> int:
        self._merge()
        return len(self._seen)


def settings_digest(plan: Plan, *, verify: bool) -> str:
    """What a copy depends on besides its source: the tool, its rules version, the settings.

    Part of each source's fingerprint: a source indexed under another is processed again.
    """
    return hashlib.sha256(
        repr(
            (
                __version__,
                RULES_VERSION,
                sorted(plan.options),
                plan.rules,
                plan.burned_in,
                plan.pixel_masks,
                verify,
            )
        ).encode()
    ).hexdigest()


class Ingest:
    """One ingest run over a set of sources into one database and one output store."""

    def __init__(
        self,
        database: db.Database,
        keys: Keys,
        plan: Plan,
        output: OutputStore,
        *,
        id_prefix: str,
        max_shift_days: int,
        batch_size: int,
        max_member_bytes: int,
        mongo: MongoSink | None = None,
        verify: bool = True,
        strict: bool = False,
        workers: int = 1,
    ) -> None:
        self.workers = workers
        self.verify = verify
        self.database = database
        self.engine = database.engine
        self.mongo = mongo
        self.mongo_ok = mongo is not None
        self.keys = keys
        self.plan = plan
        self.output = output
        self.id_prefix = id_prefix
        self.max_shift_days = max_shift_days
        self.batch_size = batch_size
        self.walker = Walker(keys.blind, max_member_bytes=max_member_bytes, skip=_folders(output))
        self.stop_requested = False
        self.strict = strict
        self.failed_strict = False
        self._studies, self._series, self._instances = Distinct(), Distinct(), Distinct()
        self._mongo_writer: ThreadPoolExecutor | None = None
        self._mongo_writes: collections.deque[Future[bool]] = collections.deque()
        self.plan_digest = settings_digest(plan, verify=verify)

    def run(self, roots: Iterable[Path], progress: Progress | None = None) -> Summary:
        """Ingest every object under ``roots``; returns the summary (also stored in the run)."""
        refuse_inside(roots, _folders(self.output))
        work.configure_pydicom()
        migrate.require_head(self.engine)
        started = time.monotonic()
        with db.transaction(self.engine) as s:
            sql.check_pseudonym_key(s, self.keys.pseudonym_id)
            run_id = sql.start_run(
                s,
                __version__,
                {
                    "profile": "basic",
                    "rules_version": RULES_VERSION,
                    "video_rules_version": VIDEO_RULES_VERSION,
                    "options": sorted(o.value for o in self.plan.options),
                },
                output_id=self.output.output_id,
            )
        summary = Summary(run_id=run_id, output_id=self.output.output_id)
        if self.mongo is not None:
            self._mongo_catch_up()
        ctx = work.RunContext(
            self.plan,
            self.keys,
            self.output,
            self.id_prefix,
            self.max_shift_days,
            run_id,
            verify=self.verify,
            made_of=CopiesMadeOf(self.engine, self.output.output_id),
        )
        try:
            with self._mongo_in_background():
                self._ingest_all(roots, ctx, summary, progress)
            if self.failed_strict:
                summary.status = "aborted"
            else:
                summary.status = "interrupted" if self.stop_requested else "completed"
        except BaseException:
            summary.status = "aborted"
            raise
        finally:
            work.clear_caches()  # nothing of this run's originals stays in memory
            summary.seconds = time.monotonic() - started
            summary.studies, summary.series = len(self._studies), len(self._series)
            summary.instances = len(self._instances)
            try:
                if self.mongo is not None:
                    self._mongo_report(summary)
                with db.transaction(self.engine) as s:
                    sql.finish_run(s, run_id, summary.status, _counts(summary))
            except Exception as e:  # noqa: BLE001 - the original error matters more
                logger.warning("could not record the end of run %s (%s)", run_id, type(e).__name__)
        return summary

    def _results(
        self, roots: Iterable[Path], ctx: work.RunContext
    ) -> Iterator[tuple[SourceFile | Failure, Outcome | Failure | Unchanged]]:
        """(item, result) per walked item, in walk order; per-file work in worker processes.

        With more than one worker, this process walks the sources and writes the database,
        and ``workers`` processes do the per-file work, in chunks of consecutive files. They
        start once the walk has more than POOL_THRESHOLD items (small runs do it all here and
        pay no start-up), and fork from a server process (``workers.context``), never from
        this one (it holds threaded database clients). With one, it is all done here (a
        worker process of its own was measured no faster: the per-file work is the limit).
        """
        items = self._skip_unchanged(self.walker.walk(roots))
        head, held = next(_chunks(items, POOL_THRESHOLD, HELD_BYTES), ([], 0))
        if self.workers == 1 or (len(head) < POOL_THRESHOLD and held < HELD_BYTES):
            yield from _in_threads(itertools.chain(head, items), ctx)
            return
        window: collections.deque[
            tuple[list[SourceFile | Failure], Future[list[Outcome | Failure]], int]
        ] = collections.deque()
        in_flight = 0  # bytes held by the chunks in the window
        limit = 2 * self.workers  # chunks in flight: bounded memory, however large the archive
        try:
            with ProcessPoolExecutor(
                self.workers,
                mp_context=worker_context(),
                initializer=work.init_worker,
                initargs=(ctx,),
            ) as pool:
                chunk: list[SourceFile | Failure] = []
                held = 0
                for item in itertools.chain(head, items):
                    if isinstance(item, Unchanged):
                        yield item.src, item  # not read at all
                        continue
                    chunk.append(item)
                    held += held_bytes(item)
                    if len(chunk) == CHUNK_FILES or held >= CHUNK_HELD_BYTES:
                        window.append((chunk, pool.submit(work.work_chunk, chunk), held))
                        in_flight += held
                        chunk, held = [], 0
                    while len(window) >= limit or in_flight > HELD_BYTES:
                        sent, done, done_held = window.popleft()
                        in_flight -= done_held
                        yield from zip(sent, done.result(), strict=True)
                if chunk:
                    window.append((chunk, pool.submit(work.work_chunk, chunk), held))
                while window:
                    sent, done, _held = window.popleft()
                    yield from zip(sent, done.result(), strict=True)
        except BrokenProcessPool:
            raise IndexerError(
                "a worker process died (out of memory, or killed); the "
                "batches committed so far are kept: run the ingest again"
            ) from None

    def source_key(self, src: SourceFile) -> str | None:
        """Keyed hash of a source's location and version alone: what its copies were made of.

        None for a source without a version (never taken for the same).
        """
        if not src.version:
            return None
        return hmac.new(
            self.keys.blind,
            f"{src.locator}\x00{src.version}".encode("utf-8", "surrogateescape"),
            hashlib.sha256,
        ).hexdigest()

    def fingerprint(self, src: SourceFile) -> str:
        """Keyed fingerprint of a source's location and version, the settings and the output.

        The output: a source rerun into a second output under new settings is not unchanged
        in the first, whose copy was made under the old ones.
        """
        return hmac.new(
            self.keys.blind,
            f"{src.locator}\x00{src.version}\x00{self.plan_digest}\x00{self.output.output_id}".encode(
                "utf-8", "surrogateescape"
            ),
            hashlib.sha256,
        ).hexdigest()

    def _skip_unchanged(
        self, items: Iterator[SourceFile | Failure]
    ) -> Iterator[SourceFile | Failure | Unchanged]:
        """Pass items on; sources indexed before and unchanged come as Unchanged.

        Their copy must still be in place. They are neither read nor processed again. A
        source indexed into this output before under other rules or settings (another
        fingerprint), or video indexed under other video rules (``VIDEO_RULES_VERSION``),
        comes with the copies it made then, which its new copy replaces.
        """
        for chunk, _held in _chunks(items, SKIP_CHECK_CHUNK, HELD_BYTES):
            prints = {
                id(i): self.fingerprint(i) for i in chunk if isinstance(i, SourceFile) and i.version
            }
            with db.transaction(self.engine) as s:
                known = {
                    p: k
                    for p, k in sql.known_sources(
                        s, list(prints.values()), self.output.output_id
                    ).items()
                    if k.video_rules in (0, VIDEO_RULES_VERSION)  # (else: video, made before)
                }
                fresh = {
                    i.source_id: self.source_key(i)
                    for i in chunk
                    if isinstance(i, SourceFile) and prints.get(id(i)) not in known
                }
                earlier = sql.replaceable_copies(s, fresh, self.output.output_id)
            for item in chunk:
                k = known.get(prints.get(id(item), ""))
                if not isinstance(item, SourceFile):
                    yield item
                elif k is not None and self.output.exists(k.copy_path, k.copy_bytes):
                    yield Unchanged(item, k)
                elif made := earlier.get(item.source_id):  # indexed here before
                    yield replace(
                        item, replaces=tuple((c.name, c.sha256, c.same_version) for c in made)
                    )
                else:
                    yield item

    def _ingest_all(
        self,
        roots: Iterable[Path],
        ctx: work.RunContext,
        summary: Summary,
        progress: Progress | None,
    ) -> None:
        batch = _Batch()
        with _Commits(
            functools.partial(self._commit, ctx.run_id),
            functools.partial(self._committed, summary),
            background=not self.strict,  # --strict: each batch's conflicts known before going on
        ) as commits:
            for item, result in self._results(roots, ctx):
                self._count(item, result, summary, batch)
                if len(batch) >= self.batch_size:
                    commits.submit(batch)
                    batch = _Batch()
                    if self.failed_strict:
                        return  # --strict: a conflict found at commit ends the run
                if progress is not None:
                    progress(summary.files_seen, summary.bytes_read)
                if self.strict and any(f.outcome == "failed" for f in batch.failures):
                    commits.submit(batch)
                    self.failed_strict = True
                    return  # --strict: the first failure ends the run, recorded
                if self.stop_requested:
                    break
            commits.submit(batch)

    def _count(
        self,
        item: SourceFile | Failure,
        result: Outcome | Failure | Unchanged,
        summary: Summary,
        batch: _Batch,
    ) -> None:
        """Count an item; what is to be committed goes into ``batch``."""
        summary.files_seen += 1
        if isinstance(item, SourceFile) and not isinstance(result, Unchanged):
            summary.bytes_read += item.size  # an unchanged file is not read at all
        if isinstance(result, Unchanged):
            summary.files_unchanged += 1
            summary.files_indexed += 1
            summary.files_already_indexed += 1
            self._instances.add(result.known.sop_uid)
            self._studies.add(result.known.study_uid)
            self._series.add(result.known.series_uid)
        elif isinstance(result, Failure):
            if isinstance(item, SourceFile) and result.reason in work.REFUSED_BY_RULES:
                if made := item.made_here():
                    batch.withdraw.append((item.source_id, made))
                    result = replace(result, message=f"{result.message}; {WITHDRAWN_NOTE}")
                elif result.source_digest:  # copies of these bytes from elsewhere (moved)?
                    batch.moved[result.source_digest] = None
            batch.failures.append(result)
        else:
            batch.outcomes.append(result)
            assert isinstance(item, SourceFile)  # noqa: S101 - an outcome has a source
            syntax = result.record.instance["transfer_syntax_uid"]
            batch.seen.append(
                (
                    self.fingerprint(item),
                    result.record.instance["sop_uid"],
                    self.source_key(item),
                    VIDEO_RULES_VERSION if syntax in VIDEO else 0,
                )
            )
            name = result.record.instance["copy_path"]
            if renamed := item.made_here(but=name):
                batch.withdraw.append((item.source_id, renamed))  # other UIDs, other names
            elif not item.replaces and (digest := result.record.instance["source_digest"]):
                batch.moved[digest] = name  # copies of these bytes from elsewhere, other names?

    def _commit(self, run_id: int, batch: _Batch) -> _Batch:
        """Write one batch in one transaction, then hand it to MongoDB; what was indexed.

        Runs on the committing thread: it changes nothing but the stores (the summary is
        the ingest thread's, in ``_committed``). A conflict found here (the SOP Instance UID
        indexed before with other content) turns its outcome into a failure. The copies that
        sources the rules in force refuse made before are withdrawn, and those of another
        name than the source's new copy (other settings gave other UIDs): removed from the
        output first, then their rows in the transaction (a kill in between: the rerun
        finishes it).
        """
        outcomes, failures, seen = batch.outcomes, batch.failures, batch.seen
        copies = [(src, name, sha) for src, made in batch.withdraw for name, sha in made]
        if batch.moved:
            copies, failures = self._moved_copies(batch.moved, copies, failures)
        for _src, name, sha in copies:  # first: killed before the commit, a rerun goes on
            self.output.remove(name, sha)
        with db.transaction(self.engine) as s:
            withdrawn = sql.withdraw(s, copies, self.output.output_id)
            done = sql.upsert_index(s, outcomes, run_id, self.output.output_id)
            if conflicts := done.conflicts:  # indexed before with other content
                outcomes, failures = _split_conflicts(outcomes, failures, conflicts)
                seen = [one for one in seen if one[1] not in conflicts]
            vault.put_identities(s, (i for o in outcomes for i in o.identities), self.keys)
            vault.put_sources(s, _locators(outcomes, failures), self.keys)
            sql.record_failures(s, run_id, failures)
            sop_uids = [o.record.instance["sop_uid"] for o in outcomes] + withdrawn.sop_uids
            batch_id = sql.create_batch(s, run_id, sop_uids) if sop_uids else None
            sql.record_sources(s, run_id, seen)
            failpoints.hit(failpoints.VAULT_WRITTEN)
        failpoints.hit(failpoints.SQL_COMMITTED)
        if batch_id is not None and self.mongo is not None and self.mongo_ok:
            self._mongo_submit(batch_id, sop_uids)
        logger.info("batch committed: %d indexed, %d not", len(outcomes), len(failures))
        return _Batch(
            outcomes,
            failures,
            seen,
            new=done.new,
            conflicts=len(conflicts),
            replaced=len(done.replaced),
            withdrawn=withdrawn.copies,
        )

    def _moved_copies(
        self,
        moved: dict[str, str | None],
        copies: list[tuple[str, str, str]],
        failures: list[Failure],
    ) -> tuple[list[tuple[str, str, str]], list[Failure]]:
        """``copies`` with those that sources of these bytes made elsewhere, to withdraw too.

        A source moved since its copy was made is not known here by its location: its
        copies are found by its bytes' digest. A refused one's failure says they go.
        """
        with db.transaction(self.engine) as s:
            found = sql.copies_of_bytes(s, moved, self.output.output_id)
        if not found:
            return copies, failures
        more = [c for made in found.values() for c in made if c not in copies]
        failures = [
            replace(f, message=f"{f.message}; {WITHDRAWN_NOTE}")
            if f.source_digest in found
            and f.reason in work.REFUSED_BY_RULES
            and WITHDRAWN_NOTE not in f.message
            else f
            for f in failures
        ]
        return copies + list(dict.fromkeys(more)), failures

    def _committed(self, summary: Summary, batch: _Batch) -> None:
        """Count a committed batch (on the ingest thread)."""
        if batch.conflicts:
            self.failed_strict = self.strict
        for o in batch.outcomes:
            self._instances.add(o.record.instance["sop_uid"])
            self._studies.add(o.record.study["study_uid"])
            self._series.add(o.record.series["series_uid"])
        summary.files_indexed += len(batch.outcomes)
        summary.files_already_indexed += len(batch.outcomes) - batch.new
        summary.copies_replaced += batch.replaced
        summary.copies_withdrawn += batch.withdrawn
        for f in batch.failures:
            if f.outcome == "skipped":
                summary.files_skipped += 1
            else:
                summary.files_failed += 1
            summary.failure_reasons[f.reason] = summary.failure_reasons.get(f.reason, 0) + 1

    @contextlib.contextmanager
    def _mongo_in_background(self) -> Iterator[None]:
        """MongoDB writes of committed batches on a thread of their own, while files go on.

        Written in commit order, at most MONGO_WRITES_AHEAD batches behind; all written (or
        left pending) when this ends. A kill in between leaves them pending, as before: the
        next run catches up.
        """
        if self.mongo is None:
            yield
            return
        with ThreadPoolExecutor(1, thread_name_prefix="mongo-writer") as writer:
            self._mongo_writer = writer
            try:
                yield
            except BaseException:
                while self._mongo_writes:  # waited for; the run's own error matters more
                    with contextlib.suppress(Exception):
                        self._mongo_writes.popleft().result()
                raise
            finally:
                self._mongo_writer = None
            while self._mongo_writes:
                self._mongo_writes.popleft().result()

    def _mongo_submit(self, batch_id: int, sop_uids: list[str]) -> None:
        """Write a committed batch's documents: on the writer thread if there is one."""
        if self._mongo_writer is None:
            self._mongo_write([batch_id], sop_uids)
            return
        while len(self._mongo_writes) >= MONGO_WRITES_AHEAD:
            self._mongo_writes.popleft().result()
        self._mongo_writes.append(
            self._mongo_writer.submit(self._mongo_write, [batch_id], sop_uids)
        )

    def _mongo_write(self, batch_ids: list[int], sop_uids: list[str]) -> bool:
        """Write the documents of committed batches; on failure leave them pending."""
        assert self.mongo is not None  # noqa: S101 - callers check
        if not self.mongo_ok:  # an earlier write failed: pending, for `sync` or the next run
            return False
        try:
            write_documents(self.database, self.mongo, sop_uids)
        except mongo.MongoUnavailableError as e:
            if self.mongo_ok:
                logger.warning(
                    "%s; the SQL index goes on, MongoDB catches up with `dicom-index sync`", e
                )
            self.mongo_ok = False
            return False
        with db.transaction(self.engine) as s:
            sql.mark_batches_done(s, batch_ids)
        return True

    def _mongo_catch_up(self) -> None:
        """Write batches left pending by earlier runs before adding new ones."""
        if self.mongo is None:
            return
        try:
            self.mongo.ensure_schema()
        except mongo.MongoUnavailableError as e:
            logger.warning("%s; MongoDB writes are pending until `dicom-index sync`", e)
            self.mongo_ok = False
            return
        sync_pending(self.database, self.mongo)

    def _mongo_report(self, summary: Summary) -> None:
        with db.transaction(self.engine) as s:
            summary.mongo_pending_batches = sql.count_pending_batches(s)
        summary.mongo = "pending" if summary.mongo_pending_batches else "written"


@dataclass(slots=True)
class _Batch:
    """Files to commit in one transaction; once committed, what became of them."""

    outcomes: list[Outcome] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seen: list[sql.Seen] = field(default_factory=list)  # the sources indexed
    new: int = 0  # committed: instances not indexed before
    conflicts: int = 0  # committed: outcomes that became conflicts
    replaced: int = 0  # committed: instances whose copy and rows replaced earlier ones
    # sources the rules in force refuse, or whose new copy has another name: the copies of
    # their present bytes made before, to withdraw
    withdraw: list[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=list)
    # and of sources not known here by location: their bytes' digest -> the name of their
    # new copy (None: refused), to withdraw the copies sources of those bytes made elsewhere
    moved: dict[str, str | None] = field(default_factory=dict)
    withdrawn: int = 0  # committed: copies withdrawn (their instances', or further ones)

    def __len__(self) -> int:
        return len(self.outcomes) + len(self.failures)


class _Commits:
    """Batches committed in order, each on a thread of its own while the next one fills.

    The ingest thread waits for a batch's commit before it hands over the next, so at most
    one is in flight (memory stays bounded) and commits keep their order; ``committed`` runs
    on the ingest thread. PostgreSQL's share of a commit (rows parsed, indexes updated) then
    overlaps the next files' de-identification. Leaving waits for the batch in flight, also
    on an error (the batches committed so far are kept, as always).
    """

    def __init__(
        self,
        commit: Callable[[_Batch], _Batch],
        committed: Callable[[_Batch], None],
        *,
        background: bool,
    ) -> None:
        self._commit, self._committed = commit, committed
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="committer") if background else None
        self._pending: Future[_Batch] | None = None

    def submit(self, batch: _Batch) -> None:
        """Commit ``batch`` (now, without a thread); an earlier commit's error is raised here."""
        if not batch:
            return
        if self._pool is None:
            self._committed(self._commit(batch))
            return
        self.wait()
        self._pending = self._pool.submit(self._commit, batch)

    def wait(self) -> None:
        """Wait for the batch in flight, and count it."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._committed(pending.result())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.wait()
            else:  # the run's own error matters more
                with contextlib.suppress(Exception):
                    self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()


_Entry = tuple[SourceFile | Failure, Outcome | Failure | Unchanged | Future[Outcome | Failure]]


WITHDRAWN_NOTE = "the copy made before of this source is withdrawn"  # in its failure's message


def _chunks(items: Iterable[T], files: int, held: int) -> Iterator[tuple[list[T], int]]:
    """Consecutive items, ``files`` at a time, fewer once they hold ``held`` bytes; and theirs.

    Members of a compressed tar are read as the walk passes them: a count of large ones
    could hold gigabytes.
    """
    chunk: list[T] = []
    size = 0
    for item in items:
        chunk.append(item)
        size += held_bytes(item)
        if len(chunk) >= files or size >= held:
            yield chunk, size
            chunk, size = [], 0
    if chunk:
        yield chunk, size


def _in_threads(
    items: Iterable[SourceFile | Failure | Unchanged], ctx: work.RunContext
) -> Iterator[tuple[SourceFile | Failure, Outcome | Failure | Unchanged]]:
    """The per-file work in this process, in walk order, copies written on a second thread.

    Python code runs one thread at a time, but hashing and writing a copy release the
    interpreter: one file's copy is written while the next file is de-identified. The index
    rows are built here, so the writer thread needs the interpreter only between its system
    calls. Copies are written one at a time, in walk order (the first of two objects with one
    name wins).
    """
    window: collections.deque[_Entry] = collections.deque()
    with (
        _switch_interval(WRITER_SWITCH_S),
        ThreadPoolExecutor(1, thread_name_prefix="copy-writer") as writer,
    ):
        for item in items:
            if isinstance(item, Unchanged):
                window.append((item.src, item))  # not read at all
            elif isinstance(item, Failure):
                window.append((item, item))
            else:
                try:
                    prepared = work.prepare(item, ctx)
                    outcome = work.index(prepared, ctx)
                except (SourceError, DeidError) as e:
                    window.append((item, work.failure(item, e)))
                else:
                    window.append((item, writer.submit(work.store_safely, outcome, prepared, ctx)))
            while window and (len(window) > WRITES_AHEAD or _ready(window[0][1])):
                yield _settled(window.popleft())
        while window:
            yield _settled(window.popleft())


@contextlib.contextmanager
def _switch_interval(seconds: float) -> Iterator[None]:
    """Run with the interpreter handing over between threads every ``seconds``.

    The writer thread takes the interpreter back after each system call (open, write, link,
    ...); at the default 5 ms it waits that long each time while de-identification runs, and
    falls behind until the files it has not written hold up the next one. At 0.2 ms it keeps
    up: on 1,000 CT slices the main thread waited 0.3-0.7 s for it at 1 ms, 0.01-0.07 s now.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _ready(result: object) -> bool:
    return not isinstance(result, Future) or result.done()


def _settled(entry: _Entry) -> tuple[SourceFile | Failure, Outcome | Failure | Unchanged]:
    item, result = entry
    return item, result.result() if isinstance(result, Future) else result


def documents(rows: sql.LevelRows) -> MongoDocs:
    """MongoDB documents from index rows."""
    return mongo.MongoDocs(
        [mongo.instance_doc(r) for r in rows.instances],
        [mongo.series_doc(r) for r in rows.series],
        [mongo.study_doc(r) for r in rows.studies],
    )


def write_documents(database: db.Database, sink: MongoSink, sop_uids: Sequence[str]) -> int:
    """Write the documents of these instances from their rows; how many instances have rows.

    An instance without a row was withdrawn: its document goes, after those of the series
    and study it was in are written again from their rows (or removed with them), which
    its document names. A write cut short leaves its document, so doing it again finishes it.
    """
    engine = database.engine
    with db.transaction(engine) as s:
        rows = sql.rows_for_documents(s, sop_uids)
    gone = sorted(set(sop_uids) - {r["sop_uid"] for r in rows.instances})
    if not gone:
        sink.write(documents(rows))
        return len(rows.instances)
    were_in = sink.get(mongo.INSTANCES, gone).values()
    series = {d["series_uid"] for d in were_in}
    studies = {d["study_uid"] for d in were_in}
    with db.transaction(engine) as s:
        rows = sql.rows_for_documents(s, sop_uids, series, studies)
    sink.write(documents(rows))
    if empty := series - {r["series_uid"] for r in rows.series}:
        sink.delete(mongo.SERIES, sorted(empty))
    if empty := studies - {r["study_uid"] for r in rows.studies}:
        sink.delete(mongo.STUDIES, sorted(empty))
    sink.delete(mongo.INSTANCES, gone)
    return len(rows.instances)


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What `sync` wrote and what is still pending."""

    batches: int
    instances: int
    pending: int


def sync_pending(database: db.Database, sink: MongoSink, *, group: int = 20) -> SyncReport:
    """Bring MongoDB level with PostgreSQL: write every pending batch, oldest first.

    Raises
    ------
    MongoUnavailableError
        MongoDB failed; what was written stays marked, the rest stays pending.

    """
    engine = database.engine
    sink.ensure_schema()
    batches = instances = 0
    while True:
        with db.transaction(engine) as s:
            pending = sql.pending_batches(s, limit=group)
        if not pending:
            break
        ids = [b for b, _ in pending]
        uids = sorted({u for _, us in pending for u in us})
        written = write_documents(database, sink, uids)
        with db.transaction(engine) as s:
            sql.mark_batches_done(s, ids)
        batches += len(ids)
        instances += written
    return SyncReport(batches, instances, 0)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What `sync --all` rewrote and removed."""

    instances: int
    removed: dict[str, int]  # by collection: documents PostgreSQL has no row for


def rebuild_documents(
    database: db.Database,
    sink: MongoSink,
    *,
    group: int = 500,
    progress: Progress | None = None,
) -> RebuildReport:
    """Rewrite every document from PostgreSQL, then remove those it has no row for.

    For a MongoDB that lost writes PostgreSQL records as done (its server killed, a restore)
    or a new, empty one. Every batch committed before it began is then marked written; an
    ingest running meanwhile writes its own. A document PostgreSQL has no row for is never
    one of that ingest's, which commits a row before it writes the document.

    Raises
    ------
    MongoUnavailableError
        MongoDB failed; run it again (each step rewrites, nothing is lost).

    """
    engine = database.engine
    sink.ensure_schema()
    with db.transaction(engine) as s:
        last = sql.last_batch_id(s)
    written, after = 0, None
    while True:
        with db.transaction(engine) as s:
            uids = sql.sop_uids_after(s, after, group)
            rows = sql.rows_for_documents(s, uids) if uids else None
        if rows is None:
            break
        sink.write(documents(rows))
        written, after = written + len(uids), uids[-1]
        if progress is not None:
            progress(written, 0)
    removed = {name: _remove_orphans(database, sink, name, group) for name in sql.LEVEL_KEYS}
    if last is not None:
        with db.transaction(engine) as s:
            sql.mark_batches_done_through(s, last)
    return RebuildReport(written, removed)


def _remove_orphans(database: db.Database, sink: MongoSink, collection: str, group: int) -> int:
    """Delete the documents of ``collection`` whose row PostgreSQL does not have."""
    removed, after = 0, None
    while ids := sink.ids_after(collection, after, group):
        with db.transaction(database.engine) as s:
            kept = sql.present(s, collection, ids)
        if orphans := [i for i in ids if i not in kept]:
            removed += sink.delete(collection, orphans)
        after = ids[-1]
    return removed


def compare_stores(database: db.Database, sink: MongoSink, *, sample: int = 50) -> list[str]:
    """Differences between PostgreSQL and MongoDB: counts, then a sample of documents."""
    problems: list[str] = []
    with db.transaction(database.engine) as s:
        counts = sql.level_counts(s)
        uids = sql.sample_sop_uids(s, sample)
        rows = sql.rows_for_documents(s, uids)
        pending = sql.count_pending_batches(s)
    docs = sink.counts()
    for name, n in counts.items():
        if docs[name] != n:
            problems.append(f"{name}: {n} rows in PostgreSQL, {docs[name]} documents in MongoDB")
    expected = documents(rows)
    for collection, wanted in (
        ("instances", expected.instances),
        ("series", expected.series),
        ("studies", expected.studies),
    ):
        found = sink.get(collection, [d["_id"] for d in wanted])
        for doc in wanted:
            got = found.get(doc["_id"])
            if got is None:
                problems.append(f"{collection}: document {doc['_id']} missing")
            elif got != doc:
                fields = sorted(k for k in doc if got.get(k) != doc[k])
                problems.append(f"{collection}: document {doc['_id']} differs in {fields}")
    if pending:
        problems.append(f"{pending} batches wait for their MongoDB write (run `sync`)")
    return problems


def _split_conflicts(
    outcomes: list[Outcome], failures: list[Failure], conflicts: set[str]
) -> tuple[list[Outcome], list[Failure]]:
    """Outcomes whose SOP Instance UID was indexed with other content become failures."""
    kept = [o for o in outcomes if o.record.instance["sop_uid"] not in conflicts]
    failed = [
        Failure(
            o.source_id,
            o.locator,
            "failed",
            "duplicate_sop_conflict",
            "an object with this SOP Instance UID is indexed with other content; the index "
            "keeps the first (its copy was written, but is not indexed)",
        )
        for o in outcomes
        if o.record.instance["sop_uid"] in conflicts
    ]
    return kept, failures + failed


def _locators(outcomes: Iterable[Outcome], failures: Iterable[Failure]) -> list[tuple[str, str]]:
    return [(o.source_id, o.locator) for o in outcomes] + [
        (f.source_id, f.locator) for f in failures
    ]


def _counts(summary: Summary) -> dict[str, int]:
    return {
        "files_seen": summary.files_seen,
        "files_indexed": summary.files_indexed,
        "files_skipped": summary.files_skipped,
        "files_failed": summary.files_failed,
        "bytes_read": summary.bytes_read,
        "studies": summary.studies,
        "series": summary.series,
        "instances": summary.instances,
    }


def _folders(output: OutputStore) -> list[Path]:
    """The output's local folder, if it has one: not walked as a source."""
    return [] if output.local_root is None else [output.local_root]


def local_output(out_dir: Path) -> OutputStore:
    """The local-directory output store."""
    return LocalStore(out_dir)


@dataclass(slots=True)
class DeidReport:
    """What a standalone `deid` run did."""

    written: int = 0
    failures: list[Failure] = field(default_factory=list)


def deidentify_tree(
    roots: Iterable[Path],
    output: OutputStore,
    keys: Keys,
    plan: Plan,
    *,
    id_prefix: str,
    max_shift_days: int,
    max_member_bytes: int,
    check: bool = True,
    progress: Progress | None = None,
) -> DeidReport:
    """The batch anonymizer: de-identify every object under ``roots``; no database.

    ``progress`` is told the files seen and the bytes read, after each, as ingest tells it.
    """
    work.configure_pydicom()
    ctx = work.RunContext(plan, keys, output, id_prefix, max_shift_days, 0, verify=check)
    report = DeidReport()
    refuse_inside(roots, _folders(output))
    walker = Walker(keys.blind, max_member_bytes=max_member_bytes, skip=_folders(output))
    seen = nbytes = 0
    try:
        for item in walker.walk(roots):
            seen += 1
            if isinstance(item, Failure):
                report.failures.append(item)
            else:
                nbytes += item.size
                try:
                    work.deidentify_file(item, ctx)
                    report.written += 1
                except (SourceError, DeidError) as e:
                    report.failures.append(work.failure(item, e))
            if progress is not None:
                progress(seen, nbytes)
    finally:
        work.clear_caches()  # as a run's end: nothing of the originals stays
    return report
