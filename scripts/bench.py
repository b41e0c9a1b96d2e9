"""Benchmark dicom-index ingest against the copy and pydicom floors (and peers, optionally).

Usage:
    python scripts/bench.py [--ct N] [--small N] [--jpeg N] [--out DIR] [--peers] [--json FILE]
        [--repeat N]

Generates two corpora (CT-like 512x512 16-bit slices; small header-heavy objects of 10-20 KB),
and a third if asked (``--jpeg``: the CT slices each as one JPEG Lossless frame of some 250 KB,
whose bytes the leak check searches), then times, per corpus, in separate processes: `cp -r`;
pydicom header parse (dcmread stop_before_pixels); pydicom read + write (no changes);
`dicom-index ingest` (copy, PostgreSQL index and vault; MongoDB off, then on when the
embedded-mongo extra is installed). With --peers it also creates virtual environments for
dicognito, dicom-anonymizer and deid and times them on the same corpus. Prints files/s, MB/s,
peak RSS and each figure as a ratio to cp and to the read-write floor, and writes a JSON report.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from pydicom.encaps import encapsulate
from pydicom.uid import ImplicitVRLittleEndian, JPEGLosslessSV1

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer.sample import make_instance, to_bytes  # noqa: E402

PY = sys.executable
CLI = [PY, "-m", "indexer.cli"]


@dataclass
class Result:
    """One timed tool on one corpus."""

    corpus: str
    tool: str
    files: int
    seconds: float
    megabytes: float
    peak_rss_mb: float
    note: str = ""
    # the machine's busy CPU time while it ran: the servers and the kernel's write-back too
    cpu_seconds: float = 0.0

    @property
    def cpu_ms_per_file(self) -> float:
        """CPU time a file, over all cores: what a busier machine's throughput divides."""
        return 1000 * self.cpu_seconds / self.files if self.files else 0.0

    @property
    def files_per_s(self) -> float:
        """Throughput."""
        return self.files / self.seconds if self.seconds else 0.0


def make_corpus(kind: str, n: int, root: Path, *, implicit: bool = False) -> tuple[int, float]:
    """Write n synthetic files of a kind (implicit VR little endian, or explicit); (files, MB)."""
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        patient, study, series = i // 200 + 1, i // 100 + 1, i // 50 + 1
        if kind == "ct":
            ds = make_instance(patient, study, series, i + 1, rows=512, columns=512)
        elif kind == "jpeg":  # the slice as one JPEG Lossless frame (never decoded)
            ds = make_instance(patient, study, series, i + 1, rows=512, columns=512)
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
            ds.PixelData = encapsulate([jpeg_frame(i)])
            ds["PixelData"].VR = "OB"
        else:  # header-heavy: many text elements, a 16x16 image, 10-20 KB
            ds = make_instance(patient, study, series, i + 1, rows=16, columns=16)
            ds.ImageComments = "x" * (5000 + (i % 10) * 500)  # LT: at most 10240
            ds.AdditionalPatientHistory = "y" * 4000
        if implicit and kind != "jpeg":  # the DICOM default syntax, which many archives hold
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True, implicit_vr=True)
            data = buf.getvalue()
        else:
            data = to_bytes(ds)
        total += len(data)
        (root / f"{i:06d}.dcm").write_bytes(data)
    return n, total / 1e6


JPEG_HEADER = (  # SOI; SOF3 (lossless, 16 bits, 512x512, one component)
    bytes.fromhex("ffd8ffc3000b100200020001011100")
    + bytes.fromhex("ffc4001300")  # DHT: a table of no codes (never read)
    + bytes(16)
    + bytes.fromhex("ffda0008010100010000")  # SOS: predictor 1
)


def jpeg_frame(seed: int, size: int = 250_000) -> bytes:
    """A JPEG Lossless frame of ``size`` bytes of scan data, as random as compressed data is.

    No 0xFF in it, so no marker; no decoder would read it, and nothing here decodes it.
    """
    scan = random.Random(seed).randbytes(size).replace(b"\xff", b"\xfe")  # noqa: S311
    return JPEG_HEADER + scan + b"\xff\xd9"


def busy_cpu_seconds() -> float:
    """The machine's CPU time spent so far, all cores, not idle (nor stolen by other guests).

    Every process counts: the database servers a command talks to are not its children, and
    the kernel writes its files back to the disk in threads of its own. 0 where there is no
    ``/proc/stat``.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS (MB) of the largest process in its tree, exit code, busy CPU.

    Workers that are not the command's own children (forked by a fork server) are not in
    the figure wait4 gives: the tree is also sampled from /proc while it runs. The CPU time
    is the whole machine's (``busy_cpu_seconds``) while the command ran.
    """
    cpu = busy_cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peaks: dict[int, int] = {}
    done = threading.Event()
    sampler = threading.Thread(target=_sample_tree, args=(proc.pid, peaks, done), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    cpu = busy_cpu_seconds() - cpu
    done.set()
    sampler.join()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        print(f"  ! {' '.join(cmd[:4])}... exited {code}: {stderr[-300:]}", file=sys.stderr)
    return seconds, max(usage.ru_maxrss, *peaks.values(), 0) / 1024, code, cpu


def _sample_tree(root: int, peaks: dict[int, int], done: threading.Event) -> None:
    """Record each descendant's peak RSS (KiB, VmHWM) every 0.1 s until ``done``."""
    while not done.wait(0.1):
        parent_of: dict[int, int] = {}
        for entry in os.scandir("/proc") if Path("/proc").is_dir() else ():
            if entry.name.isdigit():
                try:
                    stat = Path(entry.path, "stat").read_text()
                    parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        tree, grew = {root}, True
        while grew:
            new = {pid for pid, parent in parent_of.items() if parent in tree} - tree
            tree |= new
            grew = bool(new)
        for pid in tree - {root}:  # the root's own peak comes from wait4
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]))


FLOOR_PARSE = """
import sys, pathlib, pydicom
for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    pydicom.dcmread(p, stop_before_pixels=True)
"""
FLOOR_RW = """
import sys, pathlib, pydicom
out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    pydicom.dcmread(p).save_as(out / p.name)
"""


def bench_corpus(
    name: str,
    src: Path,
    n: int,
    mb: float,
    work: Path,
    env: dict[str, str],
    mongo: bool,
    peers: dict[str, list[str]],
    repeat: int = 1,
) -> list[Result]:
    """Time every tool on one corpus, ``repeat`` rounds; each tool's best round is kept."""
    best: dict[str, Result] = {}

    def run(tool: str, cmd: list[str], ok: tuple[int, ...] = (0, 1), **kw: object) -> Result:
        settle(src)
        seconds, rss, code, cpu = timed(cmd, **kw)  # type: ignore[arg-type]
        note = "" if code in ok else f"failed (exit {code})"
        print(
            f"  {tool:34s} {n / seconds:8.1f} files/s  {mb / seconds:7.1f} MB/s  {rss:6.0f} MB RSS"
            f"  {1000 * cpu / n:6.2f} CPU ms/file",
            flush=True,
        )
        old = best.get(tool)
        if old is not None:  # noise only slows a run down: the fastest round counts
            seconds, rss, note, cpu = (
                min(old.seconds, seconds),
                max(old.peak_rss_mb, rss),
                old.note or note,
                min(old.cpu_seconds, cpu),
            )
        best[tool] = Result(name, tool, n, seconds, mb, rss, note, cpu)
        return best[tool]

    cores = os.cpu_count() or 1
    variants = [("1 worker", 1, False), (f"{cores} workers", cores, False)]
    if mongo:
        variants.append((f"{cores} workers + MongoDB", cores, True))
    for round_ in range(repeat):
        if repeat > 1:
            print(f"  round {round_ + 1} of {repeat}", flush=True)
        run("cp -r", ["cp", "-r", str(src), str(_empty(work / f"cp-{name}"))])
        run("pydicom header parse", [PY, "-c", FLOOR_PARSE, str(src)])
        rw_out = str(_empty(work / f"rw-{name}"))
        run("pydicom read + write", [PY, "-c", FLOOR_RW, str(src), rw_out])
        for label, workers, with_mongo in variants:
            state = fresh_state(work / f"state-{name}-{workers}-{with_mongo}", env, with_mongo)
            run_env = {
                **env,
                "DICOM_INDEX_STATE_DIR": str(state),
                "DICOM_INDEX_MONGO_ENABLED": str(with_mongo).lower(),
            }
            try:
                run(
                    f"dicom-index ingest, {label}",
                    [
                        *CLI,
                        "ingest",
                        str(src),
                        "--out",
                        str(state / "out"),
                        "--quiet",
                        "--workers",
                        str(workers),
                    ],
                    ok=(0,),  # 1: some files failed, not a comparable run
                    env=run_env,
                )
            finally:  # (an interrupt too)
                _stop_servers(run_env)
        for tool, cmd in peers.items():
            out = _empty(work / f"{tool}-{name}")
            out.mkdir(parents=True)  # dicom-anonymizer wants it to exist
            result = run(
                tool, [c.replace("{in}", str(src)).replace("{out}", str(out)) for c in cmd]
            )
            written = sum(1 for p in out.rglob("*") if p.is_file())
            if written != n:  # some peers exit 0 on errors: count what they wrote
                result.note = f"wrote {written} of {n} files"
    return list(best.values())


BURN = "x = 0\nfor i in range(10_000_000):\n    x += i * i\n"


def cpu_scaling(n: int) -> float:
    """How many times one process's work ``n`` processes of pure Python do at once here.

    The ceiling for ``n`` workers on this machine: below ``n`` where virtual cores share
    physical ones or neighbours take their share.
    """
    ones, alls = [], []
    for _ in range(2):  # the best of two of each: neighbours come and go
        ones.append(timed([PY, "-c", BURN])[0])
        start = time.perf_counter()
        procs = [subprocess.Popen([PY, "-c", BURN]) for _ in range(n)]
        for p in procs:
            p.wait()
        alls.append(time.perf_counter() - start)
    return n * min(ones) / min(alls)


def settle(src: Path) -> None:
    """Before a tool is timed: the last tool's writes on the disk, the corpus in the page cache.

    Each tool writes a copy of the corpus, and the kernel writes it back to the disk while the
    next tool runs, slowing that one down. And some machines of this kind keep little in the
    page cache and drain it as they idle (about 3 MB/s with 23 GB free).
    """
    os.sync()
    subprocess.run(["cat", *map(str, sorted(src.iterdir()))], stdout=subprocess.DEVNULL, check=True)


def _stop_servers(env: dict[str, str]) -> None:
    """Stop the embedded servers of the state directory ``env`` names, if they run."""
    subprocess.run([*CLI, "db", "stop"], env=env, capture_output=True, check=False)


def _empty(path: Path) -> Path:
    """``path`` gone, so a tool writes into nothing left by an earlier run (``--out``)."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def fresh_state(state: Path, env: dict[str, str], mongo: bool = False) -> Path:
    """A new state directory with keys and started servers, the database migrated (untimed).

    As after a user's first command: the embedded servers keep running between commands.
    """
    state_env = {
        **env,
        "DICOM_INDEX_STATE_DIR": str(state),
        "DICOM_INDEX_MONGO_ENABLED": str(mongo).lower(),
    }
    if state.exists():  # an earlier run's, with --out: its server stopped, then gone
        _stop_servers(state_env)
        _empty(state)
    _set_up([*CLI, "keys", "init"], state_env)
    warm = state / "warm"  # UIDs of their own: not the corpus's (a conflict otherwise)
    warm.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        ds = make_instance(9999, 9999, 9999, i + 1, rows=16, columns=16)
        (warm / f"{i}.dcm").write_bytes(to_bytes(ds))
    _set_up([*CLI, "ingest", str(warm), "--out", str(state / "warm-out"), "--quiet"], state_env)
    return state


def _set_up(cmd: list[str], env: dict[str, str]) -> None:
    """Run an untimed set-up command; its failure ends the benchmark, saying why.

    The servers of the state directory it ran in are stopped first: a set-up ingest that
    failed after starting them left them running after the benchmark had ended.
    """
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        _stop_servers(env)
        raise SystemExit(
            f"set-up failed: dicom-index {' '.join(cmd[len(CLI) : len(CLI) + 2])} "
            f"exited {done.returncode}: "
            f"{(done.stdout + done.stderr)[-1500:]}"
        )


DEID_RUN = """
import sys, pathlib
from deid.config import DeidRecipe
from deid.dicom import replace_identifiers
files = [str(p) for p in sorted(pathlib.Path(sys.argv[1]).iterdir())]
replace_identifiers(dicom_files=files, deid=DeidRecipe(), save=True, output_folder=sys.argv[2])
"""


def setup_peers(work: Path) -> dict[str, list[str]]:
    """Virtual environments for the peers; a peer that fails to install is left out."""
    peers: dict[str, list[str]] = {}
    specs = {
        # dicognito 0.19's console script is broken; its module works
        "dicognito": (
            "dicognito",
            [
                "{venv}/bin/python",
                "-m",
                "dicognito",
                "--quiet",
                "--output-directory",
                "{out}",
                "{in}",
            ],
        ),
        "dicom-anonymizer": ("dicom-anonymizer", ["{venv}/bin/dicom-anonymizer", "{in}", "{out}"]),
        # pydicom/deid has no one-command anonymizer: its API with the default recipe
        "deid": ("deid", ["{venv}/bin/python", "-c", DEID_RUN, "{in}", "{out}"]),
    }
    for tool, (package, cmd) in specs.items():
        venv = work / "peers" / tool
        try:
            subprocess.run([PY, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", package], check=True, timeout=600
            )
        except (subprocess.SubprocessError, OSError) as e:
            print(f"  ({tool} not installed: {type(e).__name__})", file=sys.stderr)
            continue
        peers[tool] = [c.replace("{venv}", str(venv)) for c in cmd]
    return peers


def main() -> int:
    """Run the benchmark; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ct", type=int, default=1000, help="CT slices (default 1000)")
    ap.add_argument("--small", type=int, default=2000, help="small objects (default 2000)")
    ap.add_argument(
        "--jpeg", type=int, default=0, help="CT slices as JPEG Lossless frames (default 0)"
    )
    ap.add_argument("--out", type=Path, default=None, help="work directory (default: temp)")
    ap.add_argument("--peers", action="store_true", help="install and time peer tools")
    ap.add_argument("--json", type=Path, default=Path("bench-report.json"))
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every tool, interleaved; each tool's fastest counts (default 1)",
    )
    ap.add_argument(
        "--implicit",
        action="store_true",
        help="write the corpora in implicit VR little endian (default: explicit VR)",
    )
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="dicom-index-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CI": "1"}
    env.pop("DICOM_INDEX_DATABASE_URL", None)
    mongo = importlib.util.find_spec("secantus") is not None
    # byte-compiled, as an installed package is: start-up is not charged for compiling
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "indexer")], check=True)
    cores = os.cpu_count() or 1
    scaling = cpu_scaling(cores)
    print(f"machine: {cores} processes of pure Python do {scaling:.2f}x the work of one")
    peers = setup_peers(work) if args.peers else {}
    results: list[Result] = []
    for name, count in (("ct", args.ct), ("small", args.small), ("jpeg", args.jpeg)):
        if count <= 0:
            continue
        src = work / f"corpus-{name}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n, mb = make_corpus(name, count, src, implicit=args.implicit)
        syntax = ", implicit VR" if args.implicit else ""
        print(f"{name}: {n} files, {mb:.0f} MB{syntax}", flush=True)
        results += bench_corpus(name, src, n, mb, work, env, mongo, peers, args.repeat)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_scaling": round(scaling, 2),
        },
        "repeat": args.repeat,
        "transfer_syntax": "implicit VR little endian"
        if args.implicit
        else "explicit VR little endian",
        "results": [
            {
                **asdict(r),
                "files_per_s": round(r.files_per_s, 1),
                "cpu_ms_per_file": round(r.cpu_ms_per_file, 3),
            }
            for r in results
        ],
    }
    print()
    print(
        f"{'corpus':6s} {'tool':34s} {'files/s':>9s} {'MB/s':>8s} {'RSS MB':>7s} "
        f"{'x cp':>6s} {'x rw':>6s} {'CPU ms/file':>11s} {'cores busy':>10s}"
    )
    for name in ("ct", "small", "jpeg"):
        rows = [r for r in results if r.corpus == name]
        if not rows:
            continue
        cp = next(r for r in rows if r.tool == "cp -r").files_per_s
        rw = next(r for r in rows if r.tool == "pydicom read + write").files_per_s
        for r in rows:
            print(
                f"{name:6s} {r.tool:34s} {r.files_per_s:9.1f} {r.megabytes / r.seconds:8.1f} "
                f"{r.peak_rss_mb:7.0f} {r.files_per_s / cp:6.2f} {r.files_per_s / rw:6.2f} "
                f"{r.cpu_ms_per_file:11.2f} {r.cpu_seconds / r.seconds:10.2f}"
                + (f"  {r.note}" if r.note else "")
            )
        one = next((r for r in rows if r.tool == "dicom-index ingest, 1 worker"), None)
        many = next((r for r in rows if r.tool == f"dicom-index ingest, {cores} workers"), None)
        if one and many and cores > 1:
            print(
                f"{name:6s} {cores} workers / 1 worker: {many.files_per_s / one.files_per_s:.2f}x "
                f"(pure Python on {cores} processes here: {scaling:.2f}x)"
            )
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\nreport: {args.json}; work directory: {work}")
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
