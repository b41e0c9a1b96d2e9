"""read -> de-identify -> write copy -> index -> vault, in batches; the only caller of store/."""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pydicom.config
from pydicom.errors import InvalidDicomError

from indexer import __version__, deid, extract
from indexer.deid import Plan
from indexer.errors import DeidError, IndexerError, SourceError
from indexer.keys import Keys
from indexer.records import Failure, Outcome, SourceFile
from indexer.sources import Walker
from indexer.store import db, migrate, sql, vault
from indexer.store.files import LocalStore, OutputStore

logger = logging.getLogger(__name__)

UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(slots=True)
class Summary:
    """What an ingest did; printed at the end and stored with the run."""

    run_id: int = 0
    files_seen: int = 0
    files_indexed: int = 0
    files_already_indexed: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    bytes_read: int = 0
    studies: int = 0
    series: int = 0
    instances: int = 0
    seconds: float = 0.0
    status: str = "running"
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


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything the per-file work needs; built once per run."""

    plan: Plan
    keys: Keys
    output: OutputStore
    id_prefix: str
    max_shift_days: int
    run_id: int


Progress = Callable[[int, int], None]  # (files done, bytes done)


def configure_pydicom() -> None:
    """Read leniently and quietly: pydicom's warnings can quote element values."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def read_dataset(data: bytes) -> pydicom.Dataset:
    """Parse one DICOM object; non-DICOM and truncated files raise a PHI-free SourceError."""
    if not data:
        raise SourceError("the file is empty", reason="empty_file")
    force = data[128:132] != b"DICM" and data[:2] in (b"\x02\x00", b"\x08\x00")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except InvalidDicomError:
        raise SourceError("not a DICOM file", reason="not_dicom") from None
    except Exception as e:  # noqa: BLE001 - pydicom raises many kinds; their text can hold PHI
        raise SourceError(f"unreadable DICOM ({type(e).__name__})", reason="unreadable") from None
    if len(ds) == 0:
        raise SourceError("the file ends before its data set", reason="truncated")
    last = ds.get_item(max(ds.keys()))
    value = getattr(last, "value", None)
    length = getattr(last, "length", None)
    if (
        isinstance(value, bytes)
        and isinstance(length, int)
        and length != UNDEFINED_LENGTH
        and len(value) < length
    ):
        raise SourceError("the file is truncated inside an element", reason="truncated")
    return ds


def process(src: SourceFile, ctx: RunContext) -> Outcome:
    """One file: read once, de-identify, write the copy, build its index rows."""
    try:
        data = src.read()
    except OSError as e:
        raise SourceError(
            f"cannot read the file ({type(e).__name__})", reason="unreadable"
        ) from None
    ds = read_dataset(data)
    result = deid.apply(
        ctx.plan, ds, ctx.keys.pseudonym, id_prefix=ctx.id_prefix, max_shift_days=ctx.max_shift_days
    )
    out = result.ds
    name = f"{out.StudyInstanceUID}/{out.SeriesInstanceUID}/{out.SOPInstanceUID}.dcm"
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.save_as(buf, enforce_file_format=True)
    except Exception as e:  # noqa: BLE001 - pydicom's text can hold values
        raise DeidError(
            f"cannot encode the de-identified object ({type(e).__name__})", reason="encode_failed"
        ) from None
    digest = ctx.output.put(name, buf.getvalue())
    try:
        record = extract.index_record(
            out,
            copy_name=name,
            sha256=digest.sha256,
            size=digest.size,
            source_id=src.source_id,
            run_id=ctx.run_id,
        )
    except (ValueError, TypeError, AttributeError) as e:
        raise DeidError(
            f"cannot index the object ({type(e).__name__})", reason="index_failed"
        ) from None
    return Outcome(src.source_id, src.locator, src.size, result.identities, record)


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
    ) -> None:
        self.engine = database.engine
        self.keys = keys
        self.plan = plan
        self.output = output
        self.id_prefix = id_prefix
        self.max_shift_days = max_shift_days
        self.batch_size = batch_size
        self.walker = Walker(keys.blind, max_member_bytes=max_member_bytes)
        self.stop_requested = False
        self._studies: set[str] = set()
        self._series: set[str] = set()

    def run(self, roots: Sequence[Path], progress: Progress | None = None) -> Summary:
        """Ingest every object under ``roots``; returns the summary (also stored in the run)."""
        configure_pydicom()
        migrate.require_head(self.engine)
        started = time.monotonic()
        with db.transaction(self.engine) as s:
            sql.check_pseudonym_key(s, self.keys.pseudonym_id)
            run_id = sql.start_run(
                s,
                __version__,
                {"profile": "basic", "options": sorted(o.value for o in self.plan.options)},
            )
        summary = Summary(run_id=run_id)
        ctx = RunContext(
            self.plan, self.keys, self.output, self.id_prefix, self.max_shift_days, run_id
        )
        outcomes: list[Outcome] = []
        failures: list[Failure] = []
        try:
            for item in self.walker.walk(list(roots)):
                summary.files_seen += 1
                if isinstance(item, Failure):
                    failures.append(item)
                else:
                    summary.bytes_read += item.size
                    try:
                        outcomes.append(process(item, ctx))
                    except (SourceError, DeidError) as e:
                        failures.append(_failure(item, e))
                if len(outcomes) + len(failures) >= self.batch_size:
                    self._commit(run_id, outcomes, failures, summary)
                    outcomes, failures = [], []
                if progress is not None:
                    progress(summary.files_seen, summary.bytes_read)
                if self.stop_requested:
                    break
            self._commit(run_id, outcomes, failures, summary)
            summary.status = "interrupted" if self.stop_requested else "completed"
        except BaseException:
            summary.status = "aborted"
            raise
        finally:
            summary.seconds = time.monotonic() - started
            summary.studies, summary.series = len(self._studies), len(self._series)
            try:
                with db.transaction(self.engine) as s:
                    sql.finish_run(s, run_id, summary.status, _counts(summary))
            except Exception:  # the original error matters more
                logger.exception("could not record the end of run %s", run_id)
        return summary

    def _commit(
        self, run_id: int, outcomes: list[Outcome], failures: list[Failure], summary: Summary
    ) -> None:
        if not outcomes and not failures:
            return
        with db.transaction(self.engine) as s:
            new = sql.upsert_index(s, outcomes)
            vault.put_identities(s, (i for o in outcomes for i in o.identities), self.keys)
            vault.put_sources(s, _locators(outcomes, failures), self.keys)
            sql.record_failures(s, run_id, failures)
        for o in outcomes:
            self._studies.add(o.record.study["study_uid"])
            self._series.add(o.record.series["series_uid"])
        summary.files_indexed += len(outcomes)
        summary.files_already_indexed += len(outcomes) - new
        summary.instances += len(outcomes)
        for f in failures:
            if f.outcome == "skipped":
                summary.files_skipped += 1
            else:
                summary.files_failed += 1
            summary.failure_reasons[f.reason] = summary.failure_reasons.get(f.reason, 0) + 1
        logger.info("batch committed: %d indexed, %d not", len(outcomes), len(failures))


def _locators(outcomes: Iterable[Outcome], failures: Iterable[Failure]) -> list[tuple[str, str]]:
    return [(o.source_id, o.locator) for o in outcomes] + [
        (f.source_id, f.locator) for f in failures
    ]


def _failure(src: SourceFile, e: IndexerError) -> Failure:
    reason = getattr(e, "reason", e.code)
    outcome = "skipped" if reason in ("not_dicom", "empty_file") else "failed"
    return Failure(src.source_id, src.locator, outcome, reason, e.message)


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


def local_output(out_dir: Path) -> OutputStore:
    """The local-directory output store."""
    return LocalStore(out_dir)
