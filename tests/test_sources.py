"""Archive walking: folders, zip, tar.gz; unsafe members and links recorded, never followed."""

from __future__ import annotations

import errno
import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from indexer import sources, work
from indexer.errors import SourceError
from indexer.records import Failure, SourceFile
from indexer.sources import HEAD_BYTES, FileReader, Walker, at_least, count_files, source_id
from tests.builders import make_instance, odd_zip, rewrite_in_place, to_bytes
from tests.conftest import DEEPER_THAN_RECURSION

KEY = b"s" * 32
MARK = "PHIMARK"


def _walk(*roots):
    return list(Walker(KEY, max_member_bytes=10_000_000).walk(list(roots)))


def test_folder_walk_is_sorted_and_ids_are_phi_free(tmp_path):
    d = tmp_path / f"Doe_{MARK}"
    d.mkdir()
    for name in ("b.dcm", "a.dcm"):
        (d / name).write_bytes(b"x")
    items = _walk(tmp_path)
    assert [type(i) for i in items] == [SourceFile, SourceFile]
    assert [i.locator.rsplit("/", 1)[1] for i in items] == ["a.dcm", "b.dcm"]
    for i in items:
        assert MARK not in i.source_id
        assert MARK not in repr(i)
        assert i.source_id == source_id(KEY, i.locator)


def test_zip_slip_and_nested_archives_are_recorded(tmp_path):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok/one.dcm", to_bytes(make_instance()))
        zf.writestr("../escape.dcm", b"evil")
        zf.writestr("/abs/path.dcm", b"evil")
        zf.writestr("inner.zip", b"PK")
    items = _walk(z)
    reasons = sorted(i.reason for i in items if isinstance(i, Failure))
    assert reasons == ["nested_archive", "unsafe_member", "unsafe_member"]
    good = [i for i in items if isinstance(i, SourceFile)]
    assert len(good) == 1
    assert good[0].read()[128:132] == b"DICM"
    assert not (tmp_path.parent / "escape.dcm").exists()


def test_tar_gz_members_stream(tmp_path):
    t = tmp_path / "a.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for i in range(3):
            data = to_bytes(make_instance(instance=i + 1))
            info = tarfile.TarInfo(f"s/{i}.dcm")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    items = _walk(t)
    assert len(items) == 3
    assert all(isinstance(i, SourceFile) and i.read()[128:132] == b"DICM" for i in items)


def test_oversized_member_is_refused(tmp_path):
    z = tmp_path / "big.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", b"\0" * 5000)
    items = list(Walker(KEY, max_member_bytes=1000).walk([z]))
    assert [i.reason for i in items if isinstance(i, Failure)] == ["member_too_large"]


def test_symlink_loop_and_broken_link(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.dcm").write_bytes(b"x")
    (tmp_path / "d" / "loop").symlink_to(tmp_path)
    (tmp_path / "d" / "dangling.dcm").symlink_to(tmp_path / "nowhere")
    items = _walk(tmp_path)
    reasons = sorted(i.reason for i in items if isinstance(i, Failure))
    assert reasons == ["broken_link", "symlink_loop"]
    assert sum(isinstance(i, SourceFile) for i in items) == 1


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path, deep_folder):
    (tmp_path / "top").mkdir()
    (deep_folder(tmp_path / "top") / "x.dcm").write_bytes(b"x")
    (tmp_path / "top" / "y.dcm").write_bytes(b"y")
    items = _walk(tmp_path / "top")
    assert [type(i) for i in items] == [SourceFile, SourceFile]
    assert items[0].locator.count("/d") == DEEPER_THAN_RECURSION  # "d" sorts before "y.dcm"
    assert count_files([tmp_path / "top"]) == 2
    assert at_least([tmp_path / "top"], 2)


def test_folder_walk_order_is_depth_first_by_name(tmp_path):
    for rel in ("b/2.dcm", "b/a/1.dcm", "a.dcm", "c/3.dcm", "b/c.dcm"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    names = [Path(i.locator).relative_to(tmp_path).as_posix() for i in _walk(tmp_path)]
    assert names == ["a.dcm", "b/2.dcm", "b/a/1.dcm", "b/c.dcm", "c/3.dcm"]


def test_fifos_and_devices_are_recorded_as_skipped_never_opened(tmp_path):
    """A FIFO would block a read for ever: it is recorded, in a folder and as a source."""
    (tmp_path / "f.dcm").write_bytes(b"x")
    os.mkfifo(tmp_path / f"pipe_{MARK}.dcm")
    (tmp_path / "to_pipe.dcm").symlink_to(tmp_path / f"pipe_{MARK}.dcm")
    items = _walk(tmp_path, tmp_path / f"pipe_{MARK}.dcm", Path("/dev/null"))
    failures = [i for i in items if isinstance(i, Failure)]
    assert [(f.outcome, f.reason) for f in failures] == [("skipped", "special_file")] * 4
    assert all(MARK not in f.message and MARK not in f.source_id for f in failures)
    assert sum(isinstance(i, SourceFile) for i in items) == 1


def test_link_and_special_members_of_archives_are_recorded_never_followed(tmp_path):
    data = to_bytes(make_instance())
    t = tmp_path / "a.tar"
    with tarfile.open(t, "w") as tf:
        info = tarfile.TarInfo(f"{MARK}/ok.dcm")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        for name, kind, target in (
            ("sym.dcm", tarfile.SYMTYPE, "/etc/passwd"),
            ("hard.dcm", tarfile.LNKTYPE, f"{MARK}/ok.dcm"),
            ("fifo.dcm", tarfile.FIFOTYPE, ""),
            ("dev.dcm", tarfile.CHRTYPE, ""),
        ):
            info = tarfile.TarInfo(f"{MARK}/{name}")
            info.type, info.linkname = kind, target
            tf.addfile(info)
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo(f"{MARK}/link.dcm")
        info.external_attr = (0o120777) << 16  # a symbolic link: its content is its target
        zf.writestr(info, "/etc/passwd")
        zf.writestr("ok.dcm", data)
    items = _walk(t, z)
    failures = [(i.outcome, i.reason) for i in items if isinstance(i, Failure)]
    assert failures == [
        ("skipped", "link_member"),
        ("skipped", "link_member"),
        ("skipped", "special_file"),
        ("skipped", "special_file"),
        ("skipped", "link_member"),
    ]
    assert [i.read() for i in items if isinstance(i, SourceFile)] == [data, data]
    assert all(MARK not in i.message for i in items if isinstance(i, Failure))


def test_bad_archive_and_missing_source(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"not a zip at all")
    items = _walk(bad, tmp_path / "missing")
    assert [i.reason for i in items] == ["bad_archive", "missing"]
    assert all(MARK not in i.message for i in items)


def test_count_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.dcm").write_bytes(b"x")
    (tmp_path / "2.dcm").write_bytes(b"x")
    assert count_files([tmp_path]) == 2
    with zipfile.ZipFile(tmp_path / "a" / "x.zip", "w") as z:  # its members, from its directory
        z.mkdir("folder")
        for name in ("1.dcm", "folder/2.dcm", "3.dcm"):
            z.writestr(name, b"x")
    assert count_files([tmp_path]) == 5
    assert count_files([tmp_path / "a" / "x.zip"]) == 3
    (tmp_path / "bad.zip").write_bytes(b"not a zip")  # one failure
    assert count_files([tmp_path]) == 6
    (tmp_path / "x.tar").write_bytes(b"")  # a tar is read to its end to know
    assert count_files([tmp_path]) is None


def test_at_least_counts_until_it_knows(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.dcm").write_bytes(b"x")
    assert at_least([tmp_path], 3)
    assert not at_least([tmp_path], 4)
    assert at_least([tmp_path / "0.dcm", tmp_path / "1.dcm"], 2)
    assert not at_least([tmp_path / "0.dcm"], 2)
    (tmp_path / "x.tar").write_bytes(b"")  # members unknown: as many as asked
    assert at_least([tmp_path], 1000)
    assert at_least([tmp_path / "x.tar"], 1000)
    (tmp_path / "x.tar").unlink()
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as z:  # not read to count: assumed so too
        z.writestr("a.dcm", b"x")
    assert at_least([tmp_path], 1000)


def test_unreadable_zip_members_are_source_errors_without_their_names(tmp_path):
    """An encrypted member, one compressed by a method zipfile lacks, one whose CRC fails:
    each read is a PHI-free SourceError (zipfile's own text names the member)."""
    data = to_bytes(make_instance(1, 1, 1, 1))
    kinds = ("encrypted", "method", "crc", "fine")
    odd_zip(tmp_path / "a.zip", {f"{k}_{MARK}.dcm": data for k in kinds})
    items = list(Walker(KEY, max_member_bytes=1 << 20).walk([tmp_path / "a.zip"]))
    assert all(isinstance(i, SourceFile) for i in items)
    messages = {}
    for item in items:
        try:
            assert item.read() == data
            messages[item.locator.rsplit("!", 1)[1].split("_")[0]] = "read"
        except SourceError as e:
            assert e.reason == "unreadable"  # noqa: PT017 - one of several outcomes
            messages[item.locator.rsplit("!", 1)[1].split("_")[0]] = e.message
    assert messages == {
        "encrypted": "an archive member is encrypted",
        "method": "an archive member is compressed by a method that cannot be read "
        "(NotImplementedError)",
        "crc": "an archive member is damaged (its CRC does not match)",
        "fine": "read",
    }
    assert not any(MARK in m for m in messages.values())


def test_a_zip_member_whose_deflated_data_is_damaged_is_named_so(tmp_path):
    """zlib's error has a bare name ("error"): the message says what it means, as bz2's."""
    data = to_bytes(make_instance(1, 1, 1, 1))
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{MARK}/1.dcm", data)
        z.writestr(f"{MARK}/2.dcm", data)
        first = z.infolist()[0]
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", raw, first.header_offset + 26)
    raw[first.header_offset + 30 + name_len + extra_len] = 0xFF  # a deflate block of no type
    path.write_bytes(bytes(raw))
    damaged, fine = Walker(KEY, max_member_bytes=1 << 20).walk([path])
    with pytest.raises(SourceError) as caught:
        damaged.read()
    assert (caught.value.reason, caught.value.message) == (
        "unreadable",
        "an archive member is damaged (invalid deflate data)",
    )
    assert fine.read() == data


def _zip_of(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_an_archive_replaced_at_its_path_is_read_anew(tmp_path):
    """A new archive at the same path (a long-lived process, a second run) is read by its own
    directory, never through what was listed of the old one."""
    path = tmp_path / "a.zip"
    _zip_of(path, {f"{MARK}/one.dcm": b"first"})
    walker = Walker(KEY, max_member_bytes=1 << 20)
    (first,) = walker.walk([path])
    assert first.read() == b"first"
    path.unlink()
    _zip_of(path, {f"{MARK}/one.dcm": b"second", f"{MARK}/two.dcm": b"third"})
    assert [i.read() for i in walker.walk([path])] == [b"second", b"third"]


def test_a_member_of_an_archive_changed_since_its_listing_is_refused(tmp_path):
    path = tmp_path / "a.zip"
    _zip_of(path, {f"{MARK}/one.dcm": b"first"})
    (member,) = Walker(KEY, max_member_bytes=1 << 20).walk([path])
    path.unlink()
    _zip_of(path, {f"{MARK}/other.dcm": b"other"})
    with pytest.raises(SourceError, match=r"^the archive changed after it was listed") as caught:
        member.read()
    assert caught.value.reason == "unreadable"
    assert MARK not in str(caught.value)


def test_a_file_that_is_no_dicom_is_not_read_whole(tmp_path):
    """A disc image or a video beside the objects: its first bytes say it is no DICOM, so
    the rest is never read (a reader that returns them is all the work needs)."""
    video = tmp_path / "scan.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 5_000_000)
    head = FileReader(video)()
    assert len(head) == HEAD_BYTES
    with pytest.raises(SourceError) as caught:
        work.read_dataset(head)
    assert caught.value.reason == "not_dicom"
    for name, data in {
        "part10.dcm": to_bytes(make_instance()),
        "no_preamble.dcm": to_bytes(make_instance())[132:],  # begins with group 0002
        "tiny.txt": b"short",
    }.items():
        (tmp_path / name).write_bytes(data)
        assert FileReader(tmp_path / name)() == data, name


def test_a_file_rewritten_with_its_time_set_back_has_another_version(tmp_path):
    """The version keys the rerun's skip: a file rewritten in place with its size and
    modification time restored must not be taken for the one indexed before."""
    path = tmp_path / "a.dcm"
    path.write_bytes(b"first")
    (before,) = _walk(tmp_path)
    rewrite_in_place(path, b"other")
    (after,) = _walk(tmp_path)
    assert before.version != after.version
    assert after.read() == b"other"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (PermissionError(errno.EACCES, "denied", "/in/PHIMARK.dcm"), "PermissionError: Permission"),
        (OSError(errno.EIO, "io", "/in/PHIMARK.dcm"), "OSError: Input/output error"),
        (OSError("PHIMARK"), "(OSError)"),  # no error number: its kind only
    ],
)
def test_a_system_error_is_named_by_its_cause_never_its_path(error, said):
    message = str(SourceError.unreadable(error))
    assert said in message
    assert "PHIMARK" not in message


@pytest.mark.parametrize("chunk", [3, 1 << 16])  # entries split across reads, and not
def test_a_list_of_sources_is_read_by_lines_or_by_nuls(monkeypatch, chunk):
    monkeypatch.setattr(sources, "LIST_CHUNK", chunk)
    odd = b"caf\xe9 PHIMARK.dcm"  # not UTF-8: kept byte for byte
    lines = b"a/one.dcm\r\n\n" + odd + b"\nb dir/\n"
    nuls = b"a/one.dcm\0" + odd + b"\0line\nbreak.dcm\0"
    assert [os.fsencode(p) for p in sources.listed_paths(io.BytesIO(lines))] == [
        b"a/one.dcm",
        odd,
        b"b dir",
    ]
    assert [os.fsencode(p) for p in sources.listed_paths(io.BytesIO(nuls))] == [
        b"a/one.dcm",
        odd,
        b"line\nbreak.dcm",
    ]
    assert list(sources.listed_paths(io.BytesIO(b""))) == []


def test_roots_stream_a_listed_file_each_time_they_are_walked(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_bytes(b"x.dcm\ny.dcm\n")
    roots = sources.Roots([tmp_path / "named"], listed)
    assert list(roots) == list(roots) == [tmp_path / "named", Path("x.dcm"), Path("y.dcm")]


def test_below_finds_the_folders_inside_a_root_and_stops_reading_the_roots(tmp_path):
    """An output inside a source is walked past; the sources (a list of a million, given
    with --files-from) are streamed, and read no further once every output is placed."""
    (tmp_path / "src" / "out").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    out, elsewhere, src = tmp_path / "src" / "out", tmp_path / "elsewhere", tmp_path / "src"
    assert sources.below([out, elsewhere], [tmp_path / "x.dcm", src]) == [out]
    assert sources.below([src], [src]) == []  # at a root, not below it

    def roots():
        yield tmp_path / "x.dcm"
        yield src
        raise AssertionError("read past the root that holds every folder")

    assert sources.below([out], roots()) == [out]
    assert sources.below([], roots()) == []
