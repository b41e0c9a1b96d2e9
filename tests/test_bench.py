"""scripts/bench.py runs end to end (tiny corpora, no peers) and can reuse its work directory."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, JPEGLosslessSV1

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
bench = load_script("bench")


def _bench(work: Path, report: Path, ct: int, small: int, *more: str) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--ct",
            str(ct),
            "--small",
            str(small),
            "--out",
            str(work),
            "--json",
            str(report),
            *more,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(report.read_text())


def test_bench_times_every_tool_and_reuses_its_work_directory(tmp_path):
    work, report = tmp_path / "work", tmp_path / "report.json"
    first = _bench(work, report, 2, 3, "--jpeg", "2")
    rows = {(r["corpus"], r["tool"]): r for r in first["results"]}
    for corpus, n in (("ct", 2), ("small", 3), ("jpeg", 2)):
        for tool in ("cp -r", "pydicom header parse", "pydicom read + write"):
            assert (corpus, tool) in rows
        ingests = [r for (c, t), r in rows.items() if c == corpus and t.startswith("dicom-index")]
        assert len(ingests) >= 2  # 1 worker and N workers (and MongoDB with the extra)
        for r in (rows[(corpus, "cp -r")], *ingests):
            assert r["files"] == n
            assert r["seconds"] > 0
            assert r["peak_rss_mb"] > 0
            assert r["cpu_seconds"] >= 0  # the machine's, while it ran: its servers' too
            assert r["cpu_ms_per_file"] == round(1000 * r["cpu_seconds"] / n, 3)
            assert r["note"] == ""  # no failed run, and every file indexed (exit 0)
        assert all(r["cpu_seconds"] > 0 for r in ingests)  # counted in ticks: 10 ms or more
    assert first["machine"]["cpus"] >= 1
    assert first["machine"]["cpu_scaling"] > 0
    copies = sorted((work / "state-ct-1-False" / "out").rglob("*.dcm"))
    assert len(copies) == 2  # the 1-worker ingest really wrote the copies
    # the JPEG corpus: one JPEG Lossless frame a slice, its data searched and copied as it came
    sources = sorted((work / "corpus-jpeg").glob("*.dcm"))
    jpegs = sorted((work / "state-jpeg-1-False" / "out").rglob("*.dcm"))
    assert (len(sources), len(jpegs)) == (2, 2)
    for path in (*sources, *jpegs):
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    held = [bench.jpeg_frame(i) for i in range(2)]
    assert [frame in path.read_bytes() for frame, path in zip(held, sources, strict=True)] == [
        True,
        True,
    ]
    assert sorted(held.index(f) for p in jpegs for f in held if f in p.read_bytes()) == [0, 1]
    assert first["transfer_syntax"] == "explicit VR little endian"
    # a second run on the same directory starts from nothing left by the first (its corpus
    # in implicit VR little endian, which the copies keep)
    second = _bench(work, report, 2, 0, "--repeat", "2", "--implicit")
    assert second["repeat"] == 2
    assert second["transfer_syntax"] == "implicit VR little endian"
    written = [
        *(work / "corpus-ct").glob("*.dcm"),
        *(work / "state-ct-1-False" / "out").rglob("*.dcm"),
    ]
    assert len(written) == 4
    for path in written:
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert [r["tool"] for r in second["results"]] == [  # one row per tool, its best round
        t for (c, t) in rows if c == "ct"
    ]
    assert [r["note"] for r in second["results"]] == [""] * len(second["results"])
    assert len(list((work / "cp-ct").rglob("*.dcm"))) == 2  # not a second copy inside


def _servers_of(state: Path) -> list[int]:
    """The processes serving ``state``: PostgreSQL's postmaster and the MongoDB server."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone, or no process
            continue
        if entry.name.isdigit() and str(state).encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_a_failed_set_up_stops_the_servers_of_its_state(tmp_path):
    """A set-up ingest that failed after its servers had started ended the benchmark with
    them running (a MongoDB server of a bench's state was found running after a test run)."""
    mongo = importlib.util.find_spec("secantus") is not None
    env = {**os.environ, "CI": "1"}
    env.pop("DICOM_INDEX_DATABASE_URL", None)
    state = tmp_path / "state"
    bench.fresh_state(state, env, mongo)
    state_env = {
        **env,
        "DICOM_INDEX_STATE_DIR": str(state),
        "DICOM_INDEX_MONGO_ENABLED": str(mongo).lower(),
    }
    try:
        assert len(_servers_of(state)) >= (2 if mongo else 1)  # the warm ingest started them
        failing = [*bench.CLI, "ingest", str(tmp_path / "no-such"), "--out", str(tmp_path / "o")]
        with pytest.raises(SystemExit, match=r"^set-up failed: dicom-index ingest .* exited 1: "):
            bench._set_up(failing, state_env)
        assert _servers_of(state) == []
    finally:
        subprocess.run([*bench.CLI, "db", "stop"], env=state_env, capture_output=True, check=False)
