"""`dicom-index verify`: search de-identified outputs for the originals' identifying values.

Two ways. Pooled (the default) searches every output for every original's values: one
archive's copies, checked against the whole archive, so a value that strayed from one object
into another's copy is found too. Per object pairs each original with its own copy (by the
pseudonym SOP Instance UID, recomputed with the key) and searches that copy for that
original's values only: for outputs of unrelated sources (test corpora, several sites), where
one object's ordinary word is another's patient name.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from indexer import deid, spans, tree, work
from indexer.deid import Plan, verify
from indexer.deid.rawvalue import DEFAULT, ELEMENT_ERRORS, text_of
from indexer.deid.values import put
from indexer.errors import DeidError, SourceError
from indexer.keys import Keys
from indexer.records import SourceFile
from indexer.sources import STREAMS, Walker, below, region_of

if TYPE_CHECKING:
    from indexer.pipeline import Progress  # (files done, bytes read): as the ingest's

SOP_INSTANCE_UID = 0x00080018


@dataclass(slots=True)
class _Done:
    """Files walked or searched so far, and their bytes: told to ``progress`` as they grow."""

    progress: Progress | None
    files: int = 0
    nbytes: int = 0

    def add(self, size: int) -> None:
        self.files += 1
        self.nbytes += size
        if self.progress is not None:
            self.progress(self.files, self.nbytes)


@dataclass(frozen=True, slots=True)
class LeakReport:
    """One leak found by `verify`: which output, which original element, where."""

    output: str
    source_path: str
    found_in: str


@dataclass(slots=True)
class VerifyReport:
    """What `verify` found: outputs scanned, leaks, and DICOM objects it could not check."""

    scanned: int = 0
    leaks: list[LeakReport] = field(default_factory=list)
    # DICOM objects (not files that are no DICOM at all) whose values could not be read:
    # an original's values are then not searched for, an output not searched in
    unreadable_originals: int = 0
    unreadable_outputs: int = 0
    # per object only: outputs that are the copy of no original given (not checked), and
    # originals with no copy among the outputs (refused or not processed: nothing to check)
    unpaired_outputs: int = 0
    without_copy: int = 0

    @property
    def unchecked(self) -> int:
        """DICOM objects among the inputs that were not checked."""
        return self.unreadable_originals + self.unreadable_outputs + self.unpaired_outputs

    def add(self, output: Dataset, leaks: list[verify.Leak]) -> None:
        """Count one output searched, and what was found in it."""
        # named by its SOP Instance UID, never by its path (a path can hold a name)
        name = f"sop {output.get('SOPInstanceUID', '?')}"
        self.scanned += 1
        self.leaks += [LeakReport(name, leak.source_path, leak.found_in) for leak in leaks]


@dataclass(frozen=True, slots=True)
class Pseudonyms:
    """What pseudonyms the outputs were made with: the key and the settings that shape them."""

    keys: Keys
    id_prefix: str = "DI"
    max_shift_days: int = 3650

    def apply(self, plan: Plan, ds: Dataset) -> deid.DeidResult:
        """De-identify ``ds`` as the outputs were (changes it in place)."""
        return deid.apply(
            plan,
            ds,
            self.keys.pseudonym,
            id_prefix=self.id_prefix,
            max_shift_days=self.max_shift_days,
        )


def verify_outputs(
    originals: Sequence[Path],
    outputs: Sequence[Path],
    plan: Plan,
    *,
    max_member_bytes: int,
    pseudonyms: Pseudonyms | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Search every de-identified output for every identifying value of every original.

    An original value found only inside a dummy value is chance, not reported; with the
    ``pseudonyms`` the outputs were made with, so is one found only inside a pseudonym (a
    time among a pseudonym UID's digits). Leaks are named by the output's SOP Instance UID
    (its file name, for our outputs) and element path; objects that cannot be read are
    counted, and files that are no DICOM at all skipped. ``progress`` is told the files and
    bytes done: each original walked, then each output searched.
    """
    work.configure_pydicom()
    report = VerifyReport()
    done = _Done(progress)
    values: dict[str, str] = {}
    generated: set[str] = set()  # with the key: the pseudonyms
    for ds, found in _originals(originals, outputs, plan, max_member_bytes, report, done):
        for value, path in found.items():  # of two originals' paths, the one searched strictest
            put(values, value, path)
        if pseudonyms is not None:
            with contextlib.suppress(DeidError):  # its pseudonyms unknown: more reports, not fewer
                generated |= pseudonyms.apply(plan, ds).generated
    search = verify.Search(values)  # every output read once for them all
    made = verify.Generated(generated)  # and once for all pseudonyms, where it must be
    for _path, (out, header) in _outputs(outputs, report, done):
        with _unreadable_output(report):
            leaks = verify.find_leaks(search, out, header, generated=made, streamed_frames=True)
            report.add(out, leaks)
    return report


def verify_pairs(
    originals: Sequence[Path],
    outputs: Sequence[Path],
    plan: Plan,
    *,
    max_member_bytes: int,
    pseudonyms: Pseudonyms,
    progress: Progress | None = None,
) -> VerifyReport:
    """Search each original's own copy, and only it, for that original's identifying values.

    Copies are found by their SOP Instance UID, the original's pseudonym recomputed with the
    key and settings the outputs were made with (``pseudonyms``) and the same ``plan``.
    Outputs are listed by SOP Instance UID first (their headers read up to that element),
    then read whole when their original comes, never held; originals are read once. An
    output that is the copy of no original given is counted as not checked; an original
    without a copy is counted (the ingest refused it, or it was not among the inputs).
    ``progress`` as for ``verify_outputs`` (outputs searched: the copies paired).
    """
    work.configure_pydicom()
    report = VerifyReport()
    done = _Done(progress)
    by_uid: dict[str, list[Path]] = {}
    for path in _output_files(outputs):
        uid = _sop_uid(path, report)
        if uid is not None:
            by_uid.setdefault(uid, []).append(path)
    paired: set[Path] = set()
    scanned: set[Path] = set()
    for ds, values in _originals(originals, outputs, plan, max_member_bytes, report, done):
        try:
            result = pseudonyms.apply(plan, ds)
        except DeidError:
            report.without_copy += 1  # it cannot be de-identified, so it was not copied
            continue
        copies = by_uid.get(text_of(result.ds, SOP_INSTANCE_UID, DEFAULT, "UI"), [])
        if not copies:
            report.without_copy += 1
        for path in copies:
            paired.add(path)
            read = _read_output(path, report, done)
            if read is None:
                continue
            copy, header = read
            with _unreadable_output(report):
                leaks = verify.find_leaks(
                    values, copy, header, generated=result.generated, streamed_frames=True
                )
                report.add(copy, leaks)
                scanned.add(path)
    report.unpaired_outputs = sum(len(paths) for paths in by_uid.values()) - len(paired)
    report.scanned = len(scanned)  # a copy of two originals (one object's variants): once
    return report


def _originals(
    roots: Sequence[Path],
    outputs: Sequence[Path],
    plan: Plan,
    max_member_bytes: int,
    report: VerifyReport,
    done: _Done,
) -> Iterator[tuple[Dataset, dict[str, str]]]:
    """Every original DICOM object under ``roots`` and its identifying values by ``plan``.

    Objects whose values cannot be read are counted, not yielded. An output folder below a
    root is not walked (its copies are no originals); a root that is an output, or lies in
    one, is walked as asked (an output searched for its own values: all leak).
    """
    walker = Walker(b"verify", max_member_bytes=max_member_bytes, skip=below(outputs, roots))
    try:
        for item in walker.walk(list(roots)):
            if not isinstance(item, SourceFile):
                continue
            done.add(item.size)
            try:
                # a large object's header only, where it lies as it is in a file or an archive
                region = region_of(item.read) if item.size >= spans.STREAM_FROM else None
                ds = (  # its pixel data never read, but where it lies in memory
                    work.read_header(region)
                    if region
                    else work.read_dataset(item.read(), pixels_in_place=True)
                )
                values = verify.identifying_values(plan, ds)
            except (SourceError, OSError, *ELEMENT_ERRORS) as e:
                report.unreadable_originals += _unreadable(e)
                continue
            yield ds, values
    finally:
        STREAMS.close()  # compressed tars their large members' headers were read from


def _output_files(roots: Sequence[Path]) -> Iterator[Path]:
    """Every file under ``roots`` (a root may be a file)."""
    for root in roots:
        if root.is_file():
            yield root
            continue
        for folder, names in tree.walk(root):
            yield from (p for p in map(folder.joinpath, names) if p.is_file())


def _outputs(
    roots: Sequence[Path], report: VerifyReport, done: _Done
) -> Iterator[tuple[Path, tuple[Dataset, bytes | None]]]:
    """Every output file under ``roots`` and its object, read (``_read``); unreadable counted."""
    for path in _output_files(roots):
        read = _read_output(path, report, done)
        if read is not None:
            yield path, read


def _sop_uid(path: Path, report: VerifyReport) -> str | None:
    """An output's SOP Instance UID, its header read only as far as that; None if unreadable.

    Files that are no DICOM are skipped, other unreadable objects counted.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[SOP_INSTANCE_UID])
        return text_of(head, SOP_INSTANCE_UID, DEFAULT, "UI")
    except InvalidDicomError:
        return None
    except Exception:  # noqa: BLE001 - pydicom raises many kinds; counted, never printed
        report.unreadable_outputs += 1
        return None


def _read_output(
    path: Path, report: VerifyReport, done: _Done
) -> tuple[Dataset, bytes | None] | None:
    """The output object in ``path`` (``_read``); None, counted, if it cannot be read."""
    with _unreadable_output(report):
        size = path.stat().st_size
        done.add(size)
        out, header = _read(path, size)
        text_of(out, SOP_INSTANCE_UID, DEFAULT, "UI")  # its name, read before it is searched
        return out, header
    return None


def _read(path: Path, size: int) -> tuple[Dataset, bytes | None]:
    """The object in a file, and its header's bytes as stored where they are known.

    A large one's pixel data is left in the file (``work.read_large``); its frames' headers
    are read as they are searched (``find_leaks(streamed_frames=)``). A smaller one's is
    left where it lies in memory, and the bytes before it are the header searched, as the
    file holds them (``work.read_stored``); else ``find_leaks`` encodes the header again.
    """
    if size >= spans.STREAM_FROM:
        return work.read_large(path), None
    return work.read_stored(path.read_bytes())


@contextlib.contextmanager
def _unreadable_output(report: VerifyReport) -> Iterator[None]:
    """Count an output that cannot be read or searched, and go on to the next."""
    try:
        yield
    except (SourceError, OSError, *ELEMENT_ERRORS) as e:
        report.unreadable_outputs += _unreadable(e)


def _unreadable(e: Exception) -> int:
    """0 for a file that is no DICOM at all, 1 for an object that could not be read."""
    return int(not (isinstance(e, SourceError) and e.reason in ("not_dicom", "empty_file")))
