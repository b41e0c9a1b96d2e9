"""What is kept from one object for the next (originals among it) stays within a run."""

from __future__ import annotations

import tarfile
from pathlib import Path

from indexer import deid, extract, keys, sources, spans, work
from indexer.deid import engine, pseudonym, rawvalue, verify
from indexer.encode import encode
from indexer.store import db
from tests.builders import SampleShape, ingest_job, make_instance, to_bytes, write_archive

CACHES = (*pseudonym.CACHES, *rawvalue.CACHES, *verify.CACHES, *extract.CACHES)


def _kept() -> dict[str, int]:
    sizes = {f"{c.__module__}.{c.__name__}": c.cache_info().currsize for c in CACHES}
    sizes["outcomes"] = len(engine.OUTCOMES)
    sizes["open compressed tars"] = len(sources.STREAMS)
    return sizes


def test_a_run_keeps_values_while_it_works_and_none_after(
    db_url: str, key_file: Path, tmp_path, monkeypatch
):
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(1, 2, 2, 3), marker="PHIMARKC")
    with tarfile.open(archive / "zz.tar.gz", "w:gz") as t:  # walked last
        for path in sorted(archive.rglob("*.dcm"))[:4]:
            t.add(path, path.name)
            path.unlink()
    monkeypatch.setattr(spans, "STREAM_FROM", 1)  # its members streamed: their tar kept open
    database = db.connect(db_url, tmp_path / "state")
    job = ingest_job(database, key_file, tmp_path / "out")
    during: list[dict[str, int]] = []
    try:
        summary = job.run([archive], lambda _files, _bytes: during.append(_kept()))
    finally:
        job.output.close()
        database.engine.dispose()
    assert summary.files_indexed == 12
    assert during, "the run reported progress"
    busiest = {name: max(d[name] for d in during) for name in during[0]}
    assert all(busiest.values()), busiest  # every cache was used while the run worked
    assert not any(_kept().values())  # and emptied when it ended


def test_clear_caches_forgets_every_kept_value(tmp_path, monkeypatch):
    plan = deid.basic_plan()
    key = keys.generate().pseudonym
    for n in range(3):  # the per-object path: read, de-identify, encode, leak check, index
        ds = work.read_dataset(to_bytes(make_instance(1, 1, 1, n + 1)), pixels_in_place=True)
        found: dict[str, str] = {}
        result = deid.apply(plan, ds, key, found=found)
        encoded = encode(result.ds)
        assert not verify.find_leaks(
            found, result.ds, encoded.header, changed_only=True, generated=result.generated
        )
        extract.index_record(
            result.ds, copy_name="c.dcm", sha256="0" * 64, size=1, source_id="s", run_id=1
        )
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        t.add(__file__, "a.dcm")
    (item,) = sources.Walker(b"w", max_member_bytes=1 << 20).walk([path])
    region = sources.region_of(item.read)
    assert region is not None
    with region:
        pass  # handed back open, for the tar's next member
    assert all(_kept().values()), _kept()
    work.clear_caches()
    assert not any(_kept().values())
