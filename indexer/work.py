"""The per-file work: read once, de-identify, check for leaks, write the copy, build rows.

No database here: this is what worker processes import (spawned, so keep it light), and what
later front ends (the C-STORE receiver, the HTTP gateway) call per object.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
import pydicom.config
import pydicom.hooks
from pydicom.dataelem import RawDataElement
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.tag import BaseTag

from indexer import content, deid, extract, failpoints, fastread, sources, spans
from indexer.deid import Plan, engine, frames, pseudonym, rawvalue, verify
from indexer.deid.burned_in import BurnedInPolicy
from indexer.deid.rawvalue import DEFAULT, text_of
from indexer.deid.values import META
from indexer.encode import PIXEL_DATA, TRANSFER_SYNTAX, UNDEFINED_LENGTH, Encoded, encode
from indexer.errors import DeidError, IndexerError, SourceError
from indexer.records import Failure, Outcome, SourceFile
from indexer.sources import (
    BOMB_MIN_BYTES,
    BOMB_RATIO,
    FileReader,
    Region,
    could_be_dicom,
    file_region,
    member_errors,
    region_of,
)
from indexer.store.files import CopyConflictError, Digest, OutputStore

if TYPE_CHECKING:
    from indexer.keys import Keys


logger = logging.getLogger(__name__)

COPY_NAME_UIDS = (0x0020000D, 0x0020000E, 0x00080018)  # Study, Series, SOP Instance UID


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything the per-file work needs; built once per run."""

    plan: Plan
    keys: Keys
    output: OutputStore
    id_prefix: str
    max_shift_days: int
    run_id: int
    verify: bool = True
    # (copy name, source digest) -> the SHA-256 of the copy in the output that a source of
    # these very bytes made (elsewhere: an archive moved), which this source's copy may
    # replace; None where there is no index (``deid``)
    made_of: Callable[[str, str], str | None] | None = None
    # the key of the sources' digests (``indexer.content``), derived once, not for each file
    content_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "content_key", content.key_of(self.keys.blind))


def configure_pydicom() -> None:
    """Read leniently and quietly: pydicom's warnings can quote element values.

    Also registers ``rawvalue.raw_element_vr`` (elements pydicom reads for itself, by their
    own VRs), for the whole process.

    The validation modes silence most of them; some (an unknown character set, say) are
    warned whatever the mode, with the value in their text: those are filtered out here, for
    the whole process.
    """
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    # the file meta and the character set by their own VRs, whatever VR they were written in
    pydicom.hooks.hooks.register_callback("raw_element_vr", rawvalue.raw_element_vr)
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


def clear_caches() -> None:
    """Forget every value kept from one object for the next (originals among them).

    Pseudonyms, element outcomes, decoded texts and JSON fragments are kept, bounded and in
    memory only, while objects are worked on (a series' slices repeat most values), and a
    few compressed tars open, decompressed up to a member (``sources.STREAMS``). A run
    clears them when it ends; a long-lived process (a receiver, a gateway) calls this
    between its runs, so no original outlives the work on it.
    """
    for cached in (*pseudonym.CACHES, *rawvalue.CACHES, *verify.CACHES, *extract.CACHES):
        cached.cache_clear()
    engine.OUTCOMES.clear()
    sources.STREAMS.close()  # compressed tars kept open, decompressed up to a member


def read_dataset(data: bytes, *, pixels_in_place: bool = False) -> pydicom.Dataset:
    """Parse one DICOM object; non-DICOM and truncated files raise a PHI-free SourceError.

    With ``pixels_in_place``, pydicom stops before Pixel Data, and the element becomes a raw
    element whose value is a view into ``data``: never copied, decoded or re-encoded, it is
    written out as it came in (explicit or implicit VR little endian, Pixel Data last;
    anything else is parsed whole).
    """
    return _read_dataset(data, pixels_in_place=pixels_in_place)[0]


def read_stored(data: bytes) -> tuple[pydicom.Dataset, bytes | None]:
    """``read_dataset(data, pixels_in_place=True)``, and the bytes before its Pixel Data.

    Those are its header as stored (preamble, file meta, every element but Pixel Data),
    where Pixel Data ends the object and lies in place; None otherwise. For what searches a
    file's bytes (`verify`), rather than encoding its header again.
    """
    ds, stop = _read_dataset(data, pixels_in_place=True)
    return ds, (data[:stop] if stop is not None else None)


def _read_dataset(data: bytes, *, pixels_in_place: bool) -> tuple[pydicom.Dataset, int | None]:
    """The data set, and where its Pixel Data starts where that lies in place (else None)."""
    if not data:
        raise SourceError("the file is empty", reason="empty_file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = fastread.read(data) if pixels_in_place else None
    ds: pydicom.Dataset
    if fast is not None:
        ds, stop = fast
    else:
        ds, stop = _dcmread(data, pixels_in_place=pixels_in_place)
        if pixels_in_place and _named_deflated(data) and _deflated(ds):
            # its Pixel Data lies in the inflated stream, never in place: read it whole (it
            # was read up to there only, and the copy went without its pixel data)
            return _read_dataset(data, pixels_in_place=False)
    if pixels_in_place and stop < len(data):
        pixels = _pixels_in_place(data, stop, ds)
        if pixels is None:
            return _read_dataset(data, pixels_in_place=False)
        ds._dict[pixels.tag] = pixels  # noqa: SLF001 - stored raw, as dcmread stores it
        return _checked(ds), stop
    return _checked(ds), None


def read_header(region: Region) -> pydicom.Dataset:
    """The data set of the object in ``region`` without its pixel data: a large one's header.

    The first ``HEAD_BYTES_LIMIT`` bytes are read; a header that does not end within them (a
    vendor's raw data in a private element) is read with the rest of the object, as the
    ingest reads it. For what reads values and never writes a copy (`verify`).
    """
    with region, member_errors():
        f = region.f
        try:
            head = f.read(min(HEAD_BYTES_LIMIT, region.length))
        except OSError as e:
            raise SourceError.unreadable(e) from None
        if not head:
            raise SourceError("the file is empty", reason="empty_file")
        try:
            ds, _stop = _dcmread(head, pixels_in_place=True)
            return _checked(ds)
        except SourceError as e:
            if len(head) == region.length or e.reason == "not_dicom":  # more would not help
                raise
        try:
            data = head + f.read(region.length - len(head))
        except OSError as e:
            raise SourceError.unreadable(e) from None
    return read_dataset(data, pixels_in_place=True)


def _checked(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds``, unless it is empty or its last element is cut short (a SourceError)."""
    if len(ds) == 0:
        raise SourceError("the file ends before its data set", reason="truncated")
    # as stored, never converted (an element of an unknown VR is removed unread, wherever
    # it lies); ints compare in C
    last = ds._dict[max(ds._dict, key=int)]  # noqa: SLF001
    value = getattr(last, "value", None)
    length = getattr(last, "length", None)
    if (
        isinstance(value, bytes)
        and isinstance(length, int)
        and length != UNDEFINED_LENGTH
        and len(value) < length
    ):
        raise _cut_inside()
    return ds


def _cut_inside() -> SourceError:
    return SourceError("the file is truncated inside an element", reason="truncated")


def _invalid(e: BaseException) -> SourceError:
    """A malformed element met as the file is read, named by its kind (never its text)."""
    problem = rawvalue.element_problem(e)
    return SourceError(f"invalid DICOM: {problem}", reason="invalid_element")


DEFLATED = pydicom.uid.DeflatedExplicitVRLittleEndian
DEFLATED_MAX_BYTES = 1024**3  # the most a deflated data set may inflate to, whatever its ratio
_INFLATE_STEP = 1024 * 1024


def _refuse_deflate_bomb(data: bytes) -> None:
    """Refuse a deflated data set that inflates like a zip bomb, before pydicom inflates it.

    pydicom inflates a deflated data set whole, in memory: a file of 1.5 MB can hold 1.5 GiB
    of zeros. Here it is inflated a step at a time and counted, not kept: beyond the
    archive members' bounds (``sources.BOMB_RATIO``-fold, and ``DEFLATED_MAX_BYTES``) it is
    refused as ``zip_bomb``; a stream that does not inflate is damaged (``unreadable``), one
    that stops short of its end cut short (``truncated``). A file pydicom would not inflate
    (its file meta unreadable, or another transfer syntax) is left to pydicom to report.
    """
    if not _named_deflated(data):  # not even named: no copy made
        return
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)  # noqa: FBT003 - pydicom's signature
        meta = _read_file_meta_info(fp)
        if meta.get("TransferSyntaxUID") != DEFLATED:
            return
    except Exception:  # noqa: BLE001 - not ours to judge: pydicom reads it next
        return
    packed = memoryview(data)[fp.tell() :]
    limit = min(DEFLATED_MAX_BYTES, max(BOMB_MIN_BYTES, len(packed) * BOMB_RATIO))
    inflater, size = zlib.decompressobj(-zlib.MAX_WBITS), 0
    try:
        for start in range(0, len(packed), _INFLATE_STEP):
            chunk: bytes | memoryview = packed[start : start + _INFLATE_STEP]
            while chunk and not inflater.eof:
                size += len(inflater.decompress(chunk, _INFLATE_STEP))
                if size > limit:
                    raise SourceError(
                        f"a deflated data set inflates to more than {limit} bytes "
                        f"({BOMB_RATIO}-fold, at most {DEFLATED_MAX_BYTES})",
                        reason="zip_bomb",
                    )
                chunk = inflater.unconsumed_tail
    except zlib.error:
        raise SourceError(
            "the deflated data set is damaged (invalid deflate data)", reason="unreadable"
        ) from None
    if not inflater.eof:
        raise SourceError("the file ends inside its deflated data set", reason="truncated")


_META_SEARCH = 64 * 1024  # bytes: the file meta lies in the first few hundred


MEDIA_STORAGE_SOP_CLASS = 0x00020002
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR (PS3.10)
DIRECTORY_RECORD_SEQUENCE = 0x00041220


def is_dicomdir(ds: pydicom.Dataset) -> bool:
    """Whether ``ds`` is a DICOMDIR: by its file meta's SOP class, or its directory records."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and MEDIA_STORAGE_SOP_CLASS in meta:
        with contextlib.suppress(*rawvalue.ELEMENT_ERRORS):  # damaged: judged by the data set
            if text_of(meta, MEDIA_STORAGE_SOP_CLASS, DEFAULT, "UI") == MEDIA_STORAGE_DIRECTORY:
                return True
    return DIRECTORY_RECORD_SEQUENCE in ds._dict  # noqa: SLF001 - as stored, not converted


def _dcmread(data: bytes, *, pixels_in_place: bool) -> tuple[pydicom.Dataset, int]:
    """Read ``data`` with pydicom; the data set, and where reading stopped."""
    _refuse_deflate_bomb(data)
    force = data[128:132] != b"DICM" and could_be_dicom(data)  # no preamble: group 2 or 8 first
    fp = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fp, force=force, stop_before_pixels=pixels_in_place)
    except InvalidDicomError:
        raise SourceError("not a DICOM file", reason="not_dicom") from None
    except rawvalue.ELEMENT_ERRORS as e:  # an element: what of it, in words
        # reading it needed more bytes than were left
        if fp.tell() >= len(data) and not _named_deflated(data):
            raise _cut_inside() from None
        raise _invalid(e) from None
    except Exception as e:  # noqa: BLE001 - pydicom raises many kinds; their text can hold PHI
        raise SourceError(f"unreadable DICOM ({type(e).__name__})", reason="unreadable") from None
    stop = fp.tell()
    if stop == len(data) and not _named_deflated(data):
        _refuse_cut_header(ds, data)
    return ds, stop


def _deflated(ds: pydicom.Dataset) -> bool:
    """Whether ``ds`` was read as a deflated data set (by its file meta's transfer syntax)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or TRANSFER_SYNTAX not in meta:
        return False
    with contextlib.suppress(*rawvalue.ELEMENT_ERRORS):
        return text_of(meta, TRANSFER_SYNTAX, DEFAULT, "UI") == DEFLATED
    return False


def _named_deflated(data: bytes) -> bool:
    """Whether ``data`` may be a deflated data set: its elements' places are not in ``data``."""
    return data.find(DEFLATED.encode(), 0, _META_SEARCH) >= 0


def _refuse_cut_header(ds: pydicom.Dataset, data: bytes) -> None:
    """Refuse a data set whose last element ends short of the file's end (a SourceError).

    pydicom ends a data set quietly where fewer bytes are left than an element's header
    takes: a file cut there would pass for a whole one, the elements it lost unnoticed.
    Two or more NUL bytes past the end are padding (some writers pad files so): no element
    of a data set starts so, its group being at least 0008. One byte, NUL or not, is a cut
    (a group's first byte is NUL in big endian, and in little endian for 6000, 5000...).
    After an element of undefined length (its end not kept) nothing is judged. The last
    element is the one read last, not the greatest tag: a file's elements may be out of order.
    """
    if not ds._dict:  # noqa: SLF001 - as stored; an empty data set is judged by _checked
        return
    last = max(ds._dict.values(), key=_value_start)  # noqa: SLF001
    if isinstance(last, RawDataElement):
        start, length = last.value_tell, last.length
    elif last.is_undefined_length or last.file_tell is None:
        return  # a sequence of undefined length (read as it was read): its end not kept
    else:  # converted as it was read (Specific Character Set): its length is in its header
        start, length = last.file_tell, _length_before(data, last.file_tell, last.VR, ds)
    if length == UNDEFINED_LENGTH:
        return  # fragments: read up to their delimiter
    end = start + length
    if end > len(data):
        raise _cut_inside()
    tail = data[end:]
    if tail and (len(tail) == 1 or tail.strip(b"\0")):
        raise SourceError("the file ends inside an element's header", reason="truncated")


def _value_start(element: RawDataElement | pydicom.DataElement) -> int:
    if isinstance(element, RawDataElement):
        return element.value_tell
    return element.file_tell or 0


def _length_before(data: bytes, start: int, vr: str, ds: pydicom.Dataset) -> int:
    """The length in the header of the element whose value starts at ``start``."""
    implicit, little = ds.original_encoding
    size = 4 if implicit or vr.encode() in rawvalue.LONG_LENGTH_VRS else 2
    return int.from_bytes(data[start - size : start], "little" if little else "big")


_PIXEL_TAG = b"\xe0\x7f\x10\x00"
_ITEM, _SEQUENCE_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"


def _pixels_in_place(data: bytes, pos: int, ds: pydicom.Dataset) -> RawDataElement | None:
    """Pixel Data at ``pos`` as a raw element over ``data``; None where that is not simple."""
    extent = _pixel_extent(data, pos, ds, lambda p: data[p : p + 8])
    if extent is None or extent[3] != len(data):  # truncated, or elements after Pixel Data
        return None
    vr, length, start, end = extent
    # a view, not a copy; of encapsulated frames, their items (the delimiter is written after)
    value = memoryview(data)[start : end if length != UNDEFINED_LENGTH else end - 8]
    return _pixel_element(vr, length, value, start)


def _pixel_extent(
    head: bytes, pos: int, ds: pydicom.Dataset, at: Callable[[int], bytes]
) -> tuple[str, int, int, int] | None:
    """Pixel Data at ``pos``: its VR, length, and where its value starts and it ends.

    ``head`` holds the element's head; ``at(p)`` gives the 8 bytes at ``p`` (fewer past the
    end), for the items of encapsulated frames. None where the element is not the simple
    kind (explicit VR little endian OB or OW; items ending in a sequence delimiter; implicit
    VR little endian of defined length, its VR then "": it has none).
    """
    if ds.original_encoding == (True, True):
        if head[pos : pos + 4] != _PIXEL_TAG or pos + 8 > len(head):
            return None
        length = int.from_bytes(head[pos + 4 : pos + 8], "little")
        if length == UNDEFINED_LENGTH:  # frames in items need explicit VR: pydicom reads it
            return None
        return "", length, pos + 8, pos + 8 + length
    vr = head[pos + 4 : pos + 6]
    if (
        ds.original_encoding != (False, True)
        or head[pos : pos + 4] != _PIXEL_TAG
        or vr not in (b"OB", b"OW")
        or pos + 12 > len(head)
    ):
        return None
    start = pos + 12
    length = int.from_bytes(head[pos + 8 : start], "little")
    if length != UNDEFINED_LENGTH:
        return vr.decode(), length, start, start + length
    p = start
    while (item := at(p))[:4] == _ITEM:
        p += 8 + int.from_bytes(item[4:8], "little")
    if item != _SEQUENCE_END + b"\x00" * 4:
        return None
    return vr.decode(), length, start, p + 8


def _pixel_element(vr: str, length: int, value: object, start: int) -> RawDataElement:
    """The raw element ``dcmread`` makes, its value a view or a span (implicit VR: no VR)."""
    return RawDataElement(
        BaseTag(PIXEL_DATA),
        vr or None,
        length,
        value,  # type: ignore[arg-type]  # a view or a span: pydicom never decodes it
        start,
        is_implicit_VR=not vr,
        is_little_endian=True,
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """One object de-identified, checked for leaks and encoded; not stored yet."""

    src: SourceFile
    result: deid.DeidResult
    name: str
    encoded: Encoded
    # keyed, of the source's bytes (``indexer.content``); a streamed object's as its copy is
    # written (its source span, tapped)
    source: str | spans.Tapped | None

    def source_digest(self) -> str | None:
        """The source's keyed digest; a streamed object's once its copy was written."""
        return self.source.digest if isinstance(self.source, spans.Tapped) else self.source


@dataclass(frozen=True, slots=True)
class Copied:
    """One object de-identified, checked for leaks and written to the output store."""

    result: deid.DeidResult
    name: str
    digest: Digest
    replaced: str | None  # the SHA-256 of the copy it replaced, if one
    source_digest: str | None  # keyed, of the source's bytes


def prepare(src: SourceFile, ctx: RunContext) -> Prepared:
    """Read once, de-identify, encode, check for leaks. No database, nothing written."""
    in_place = ctx.plan.burned_in is not BurnedInPolicy.CLEAN  # unless pixels may be cleaned
    key = ctx.content_key
    with contained(src):
        ds = _streamed(src, key) if in_place and src.size >= spans.STREAM_FROM else None
    if ds is None:
        try:
            data = src.read()
        except OSError as e:
            raise SourceError.unreadable(e) from None
        with contained(src):
            ds = read_dataset(data, pixels_in_place=in_place)
        digest: str | spans.Tapped | None = content.of_bytes(key, data)
    else:
        pixels = ds._dict[BaseTag(PIXEL_DATA)].value  # noqa: SLF001 - the span, as _streamed made it
        digest = pixels if isinstance(pixels, spans.Tapped) else None
    with contained(src):
        try:
            return _prepare(src, ds, ctx, digest)
        except DeidError as e:  # the rules refuse these bytes: copies made of them go
            _with_source_digest(e, digest)
            raise


def _with_source_digest(e: DeidError, source: str | spans.Tapped | None) -> None:
    """Give a refused object's error its source's digest: the copies made of its bytes go.

    A streamed object that the rules refuse before its copy is written through, or as it is,
    has its source read to the end for it (only then: its copy's write reads it otherwise).
    """
    if isinstance(source, spans.Tapped):
        if source.digest is None and e.reason in REFUSED_BY_RULES:
            with contextlib.suppress(Exception):  # unreadable now: the refusal stands as it is
                for _ in source.chunks():
                    pass
        source = source.digest
    e.source_digest = source if isinstance(source, str) else None


HEAD_BYTES_LIMIT = 32 << 20  # what is read of it at most: its header must end within
HEAD_READS = (1 << 20, HEAD_BYTES_LIMIT)  # what is read of it first, then (held while copied)


def _streamed(src: SourceFile, key: bytes | None = None) -> pydicom.Dataset | None:
    """A large object's data set, its pixel data a span of its source; None: read it whole.

    With ``key``, the span is ``spans.Tapped``: the source's keyed digest (``indexer.content``)
    is worked out as its copy is written, the source read no more for it.

    A file, or an archive's member (``sources.region_of``). The head is read and parsed as
    any object's; Pixel Data must follow it and end the object (explicit VR little endian,
    native or encapsulated items and their delimiter; implicit VR little endian, native).
    The source is read forward only: a compressed member's bytes are decompressed once here,
    and again as the span is copied.
    """
    try:
        region = region_of(src.read)
        if region is None:
            return None
        with region, member_errors():
            f, base, size = region.f, region.start, region.length
            head = b""
            for limit in HEAD_READS:  # a header seldom needs more than the first
                head += f.read(min(limit, size) - len(head))
                if len(head) < min(limit, size) or not could_be_dicom(head):
                    return None  # no DICOM, or ends early (a cut archive): its read says so
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fast = fastread.read(head)
                if fast is not None and fast[1] + 12 <= len(head):  # Pixel Data's head within
                    break
            else:
                return None
            ds, stop = fast

            def at(p: int) -> bytes:  # the 8 bytes at p (items lie in order: forward only)
                want = max(0, min(8, size - p))
                got = head[p : p + want]
                if len(got) < want:
                    f.seek(base + p + len(got))
                    got += f.read(want - len(got))
                return got

            extent = _pixel_extent(head, stop, ds, at)
    except OSError as e:
        raise SourceError.unreadable(e) from None
    if extent is None or extent[3] != size:  # cut short, or elements after Pixel Data
        return None
    vr, length, start, end = extent  # the span holds the delimiter too: written as it is
    span = region.span(start, end, head)
    if key is not None and start <= len(head):  # (Pixel Data's head is within ``head``)
        span = spans.Tapped(span, span.start, span.end, content.hasher(key, head[:start]))
    ds._dict[BaseTag(PIXEL_DATA)] = _pixel_element(vr, length, span, start)  # noqa: SLF001
    return _checked(ds)


def read_large(path: Path) -> pydicom.Dataset:
    """A large object's data set for searching (`verify`), its frames a span of the file.

    Where its pixel data does not end the file (as the ingest writes it), its header alone.
    """
    ds = _streamed(SourceFile("", str(path), path.stat().st_size, FileReader(path)))
    return ds if ds is not None else read_header(file_region(path))


def _prepare(
    src: SourceFile, ds: pydicom.Dataset, ctx: RunContext, digest: str | spans.Tapped | None
) -> Prepared:
    if is_dicomdir(ds):  # read whole by `verify`: its patients' names are searched for
        raise SourceError("a DICOMDIR: a media directory, no object of its own", reason="dicomdir")
    values: dict[str, str] | None = {} if ctx.verify else None
    result = deid.apply(
        ctx.plan,
        ds,
        ctx.keys.pseudonym,
        id_prefix=ctx.id_prefix,
        max_shift_days=ctx.max_shift_days,
        found=values,
    )
    out = result.ds
    name = "/".join(text_of(out, tag, DEFAULT, "UI") for tag in COPY_NAME_UIDS) + ".dcm"
    try:
        encoded = encode(out)
    except Exception as e:  # noqa: BLE001 - pydicom's text can hold values
        problem = (
            rawvalue.element_problem(e, "written")
            if isinstance(e, rawvalue.ELEMENT_ERRORS)
            else f"unexpected {type(e).__name__}"
        )
        raise DeidError(
            f"cannot encode the de-identified object: {problem}", reason="encode_failed"
        ) from None
    if values is not None:
        _refuse_leaks(values, result, encoded.header)
        encoded = _checked_as_streamed(encoded, values, result)
    return Prepared(src, result, name, encoded, digest)


def _checked_as_streamed(
    encoded: Encoded, values: dict[str, str], result: deid.DeidResult
) -> Encoded:
    """``encoded``, its streamed frames searched for ``values`` as they are copied.

    Their headers for every value, all their bytes for the long ones (``verify.DATA_MIN``).
    """
    last = encoded.pixels[-1] if encoded.pixels else None
    if not isinstance(last, frames.Blanked):
        return encoded
    ds, generated = result.ds, result.generated
    searched = replace(
        last,
        check=verify.frame_header_check(values, ds, generated),
        data_check=verify.frame_data_check(values, ds, generated),
    )
    return replace(encoded, pixels=(*encoded.pixels[:-1], searched))


def write_copy(prepared: Prepared, ctx: RunContext) -> Copied:
    """Store a prepared object's copy (a conflict with another copy is its failure).

    The copy replaces the one its source made here before (``SourceFile.replaces``), or, on
    a conflict, the one the index says a source of the same bytes made (``RunContext.made_of``:
    the source moved since), and no other.
    """
    name, parts = prepared.name, prepared.encoded.parts
    replaces = prepared.src.replaced(name)
    try:
        digest = ctx.output.put(name, parts, replaces)
    except CopyConflictError as e:
        source = prepared.source_digest()  # (a streamed one's is known: its span was read)
        moved = ctx.made_of(name, source) if ctx.made_of and source else None
        if moved is None or moved == replaces:
            raise DeidError(e.message, reason="duplicate_sop_conflict") from None
        try:
            digest = ctx.output.put(name, parts, moved)
        except CopyConflictError as again:
            raise DeidError(again.message, reason="duplicate_sop_conflict") from None
        replaces = moved
    except DeidError as e:  # refused as it streamed (text in a frame's header)
        _with_source_digest(e, prepared.source)
        raise
    failpoints.hit(failpoints.COPY_WRITTEN)
    return Copied(prepared.result, name, digest, replaces, prepared.source_digest())


def deidentify_file(src: SourceFile, ctx: RunContext) -> Copied:
    """Read once, de-identify, check for leaks, write the copy. No database."""
    return write_copy(prepare(src, ctx), ctx)


def finish(prepared: Prepared, ctx: RunContext) -> Outcome:
    """Build a prepared object's index rows, then write its copy (none if it cannot be indexed)."""
    return with_copy(index(prepared, ctx), write_copy(prepared, ctx))


def index(prepared: Prepared, ctx: RunContext) -> Outcome:
    """A prepared object's index rows, to be completed by ``with_copy`` once it is stored."""
    with contained(prepared.src):
        try:
            record = extract.index_record(
                prepared.result.ds,
                copy_name=prepared.name,
                sha256="",
                size=0,
                source_id=prepared.src.source_id,
                run_id=ctx.run_id,
            )
        except rawvalue.ELEMENT_ERRORS as e:
            # a kept number whose length fits no whole value is damage, as the de-id finds it
            damaged = isinstance(e, rawvalue.UnfitLengthError | BytesLengthException)
            raise DeidError(
                f"cannot index the object: {rawvalue.element_problem(e)}",
                reason="invalid_element" if damaged else "index_failed",
            ) from None
    src = prepared.src
    return Outcome(
        src.source_id,
        src.locator,
        src.size,
        prepared.result.identities,
        record,
        src.replaced(prepared.name),
    )


def with_copy(outcome: Outcome, copied: Copied) -> Outcome:
    """``outcome`` with what its stored copy is, the source's digest, the copy it replaced.

    A streamed object's source digest is known once its copy is written.
    """
    outcome.record.instance["copy_sha256"] = copied.digest.sha256
    outcome.record.instance["copy_bytes"] = copied.digest.size
    outcome.record.instance["source_digest"] = copied.source_digest
    return (
        outcome
        if copied.replaced == outcome.replaces
        else replace(outcome, replaces=copied.replaced)
    )


def process(src: SourceFile, ctx: RunContext) -> Outcome:
    """One file: de-identify and copy it, then build its index rows."""
    return finish(prepare(src, ctx), ctx)


def process_safely(item: SourceFile, ctx: RunContext) -> Outcome | Failure:
    """``process``, with a bad file's error returned as its recorded failure."""
    try:
        return process(item, ctx)
    except (SourceError, DeidError) as e:
        return failure(item, e)


def store_safely(outcome: Outcome, prepared: Prepared, ctx: RunContext) -> Outcome | Failure:
    """Store an indexed object's copy and complete ``outcome``; a failure comes back as such."""
    try:
        return with_copy(outcome, write_copy(prepared, ctx))
    except (SourceError, DeidError) as e:
        return failure(prepared.src, e)


_WORKER_CTX: RunContext | None = None


def init_worker(ctx: RunContext) -> None:
    """Set up a worker process: the run's context, quiet pydicom, signals left to the parent."""
    global _WORKER_CTX  # noqa: PLW0603 - one context per worker process
    _WORKER_CTX = ctx
    configure_pydicom()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run between batches
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def work_chunk(items: list[SourceFile | Failure]) -> list[Outcome | Failure]:
    """Consecutive items in a worker process (``init_worker`` set its context); their results.

    A chunk at a time: results cross between processes in one message per chunk (the items
    do not cross back: a compressed tar's member holds its bytes). One file after the other,
    without a writer thread: with every core busy, the thread's hand-overs cost more than
    they overlap.
    """
    assert _WORKER_CTX is not None  # noqa: S101 - set by init_worker
    ctx = _WORKER_CTX
    return [i if isinstance(i, Failure) else process_safely(i, ctx) for i in items]


def _refuse_leaks(values: dict[str, str], result: deid.DeidResult, header: bytes) -> None:
    try:
        leaks = verify.find_leaks(
            values, result.ds, header, changed_only=True, generated=result.generated
        )
    except rawvalue.ELEMENT_ERRORS as e:
        raise DeidError(
            f"cannot check the copy for identifying values: {rawvalue.element_problem(e)}; "
            "not written",
            reason="invalid_element",
        ) from None
    if leaks:
        raise DeidError(
            f"{len(leaks)} identifying value(s) survived de-identification "
            f"({_leak_places(leaks, values, result)}); not written",
            reason="leak_detected",
        )


def _leak_places(leaks: list[verify.Leak], values: dict[str, str], result: deid.DeidResult) -> str:
    """Where each leaked value was, and the copy's element that holds it where one does.

    The ingest's check finds a value kept as read in the copy's header bytes; the full check
    (``verify``'s, run for a refused object only) names the element, so that a site rule can
    remove it: "from (0008,1010) into (3002,0020)". Paths only, never values.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            named = verify.find_leaks(values, result.ds, generated=result.generated)
    except Exception:  # noqa: BLE001 - naming the place is a courtesy: the refusal stands
        named = []
    into = {
        leak.source_path: leak.found_in for leak in named if leak.found_in.startswith(("(", META))
    }
    sources = sorted({leak.source_path for leak in leaks})[:5]
    return "from " + ", ".join(f"{s} into {into[s]}" if s in into else s for s in sources)


@contextlib.contextmanager
def contained(src: SourceFile) -> Iterator[None]:
    """Make an error no check foresaw, in one object's work, that object's failure.

    Errors raised on purpose (``IndexerError``) pass. Any other exception, a defect of
    dicom-index or pydicom met by an odd object, is logged by its type and place, never its
    text (it can quote values), and becomes a ``DeidError`` with reason
    ``unexpected_error``: the object is neither written nor indexed, and the run goes on.
    """
    try:
        yield
    except IndexerError:
        raise
    except Exception as e:  # noqa: BLE001 - one object must not end the run
        where = traceback.extract_tb(e.__traceback__)[-1]
        logger.warning(
            "source %s: unexpected %s at %s:%s; recorded as failed, not written",
            src.source_id,
            type(e).__name__,
            Path(where.filename).name,
            where.lineno,
        )
        raise DeidError(
            f"could not process the object (unexpected {type(e).__name__})",
            reason="unexpected_error",
        ) from None


# sources that are no object to index, rather than objects that failed
SKIPPED = frozenset({"not_dicom", "empty_file", "dicomdir"})
# the rules in force refuse the object: a copy its source made under other rules is withdrawn
REFUSED_BY_RULES = frozenset(
    {"leak_detected", "burned_in_annotation", "rule_mismatch", "value_too_long", "bad_pixels"}
)


def failure(src: SourceFile, e: IndexerError) -> Failure:
    """The recorded failure of one source: no object to index is a skip, the rest failures."""
    reason = getattr(e, "reason", e.code)
    outcome = "skipped" if reason in SKIPPED else "failed"
    digest = e.source_digest if isinstance(e, DeidError) else None
    return Failure(src.source_id, src.locator, outcome, reason, e.message, digest)
