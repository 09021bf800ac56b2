"""Where the test suite's memory goes: resident memory after every test, and which tests raise the peak.

    python benchmarks/suite_memory.py run [--name full] [-- PYTEST ARGS...]   # e.g. -- tests/test_zoo.py
    python benchmarks/suite_memory.py report [--top 15]                      # print every stored result again

``run`` runs ``python -m pytest`` from the repository root in a subprocess wrapped by ``/usr/bin/time -v``
(its "Maximum resident set size" is the figure a CI machine has to hold), with this module loaded as a
pytest plugin (``-p suite_memory``). After each test's teardown the plugin reads the pytest process's
current and peak resident memory (VmRSS and VmHWM in /proc/self/status) and the largest resident memory
of any child process it has waited for (``getrusage(RUSAGE_CHILDREN).ru_maxrss``: notebook kernels, CLI
subprocesses, worker pools). Linux starts a child's figure at its parent's peak when it forks (or
vforks and execs), so that one never reads below the pytest process's peak at the time; the live
descendants' own RSS, summed, is sampled too. A thread samples VmRSS every 20 ms (the descendants every
100 ms) so that a test whose memory rises and falls again is seen. It writes one JSON line per test to a
log, which ``run`` turns into:

- the tests (and files) that raise the process's peak most (the VmHWM after the test less before it);
- the tests that hold most while they run (the sampled maximum less the resident memory before the test);
- the memory a file does not give back (VmRSS after its last test less before its first);
- the tests that raise the children's peak, and those whose live child processes hold most.

Results go to benchmarks/results/suite_memory/<name>.json with the machine, date and git commit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "suite_memory"
LOG_ENV = "NASSEG_SUITE_MEMORY_LOG"
SAMPLE_S = 0.02
MIB = 1024 * 1024


# The plugin: loaded into the pytest process by ``-p suite_memory`` (benchmarks/ on PYTHONPATH).


def _status_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KiB."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def _children_kib() -> int:
    """The largest resident memory of any child process waited for so far (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def _descendants_kib() -> int:
    """The resident memory of every live descendant process, summed (KiB)."""
    total, pending, seen = 0, [os.getpid()], set()
    while pending:
        pid = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    pending += [int(c) for c in f.read().split() if int(c) not in seen]
            except OSError:
                pass
        if pid != os.getpid():
            seen.add(pid)
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            except OSError:
                pass
    return total


class _Sampler:
    """Samples VmRSS (and, every fifth time, the descendants' summed RSS) on a daemon thread; ``take``
    returns both maxima since the last ``take``."""

    def __init__(self) -> None:
        self._max, self._descendants = 0, 0
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, name="suite-memory-sampler", daemon=True).start()

    def _loop(self) -> None:
        for n in itertools.count():
            rss = _status_kib()["VmRSS"]
            descendants = _descendants_kib() if n % 5 == 0 else 0
            with self._lock:
                self._max = max(self._max, rss)
                self._descendants = max(self._descendants, descendants)
            time.sleep(SAMPLE_S)

    def take(self) -> tuple[int, int]:
        rss = _status_kib()["VmRSS"]
        with self._lock:
            peak, self._max = max(self._max, rss), rss
            descendants, self._descendants = self._descendants, 0
        return peak, descendants


_sampler: _Sampler | None = None
_log: Any = None


def _write(record: dict[str, Any]) -> None:
    if _log is not None:
        _log.write(json.dumps(record) + "\n")
        _log.flush()


def pytest_configure(config: Any) -> None:
    global _sampler, _log
    path = os.environ.get(LOG_ENV)
    if path and _log is None and not hasattr(config, "workerinput"):
        _log = open(path, "a")  # noqa: SIM115 (open for the whole session, closed at its end)
        _sampler = _Sampler()
        _write({"event": "start", **_status_kib(), "children": _children_kib()})


def _sampled() -> dict[str, int]:
    assert _sampler is not None
    peak, descendants = _sampler.take()
    return {"sampled_max": peak, "descendants_max": descendants, **_status_kib(), "children": _children_kib()}


def pytest_collection_finish(session: Any) -> None:
    if _sampler is not None:
        _write({"event": "collected", "tests": len(session.items), **_sampled()})


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    if _sampler is not None:
        _sampler.take()  # the maximum of the gap between tests belongs to neither
        _write({"event": "before", "nodeid": nodeid, **_status_kib(), "children": _children_kib()})


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    if _sampler is not None:
        _write({"event": "after", "nodeid": nodeid, **_sampled()})


def pytest_unconfigure(config: Any) -> None:
    global _log
    if _log is not None:
        _write({"event": "end", **(_sampled() if _sampler else {})})
        _log.close()
        _log = None


# The driver.


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / MIB
    return float("nan")


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def summarise(events: list[dict[str, Any]], top: int = 15) -> dict[str, Any]:
    """Per-test rows, per-file totals and the largest offenders, from the plugin's log (figures in MiB)."""
    tests: list[dict[str, Any]] = []
    before: dict[str, Any] = {}
    start = next((e for e in events if e["event"] == "start"), None)
    collected = next((e for e in events if e["event"] == "collected"), None)
    end = next((e for e in events if e["event"] == "end"), None)
    for e in events:
        if e["event"] == "before":
            before = e
        elif e["event"] == "after" and before.get("nodeid") == e["nodeid"]:
            tests.append(
                {
                    "nodeid": e["nodeid"],
                    "rss_before": before["VmRSS"] / 1024,
                    "rss_after": e["VmRSS"] / 1024,
                    "held": (e["sampled_max"] - before["VmRSS"]) / 1024,
                    "sampled_max": e["sampled_max"] / 1024,
                    "peak_after": e["VmHWM"] / 1024,
                    "raised_peak": (e["VmHWM"] - before["VmHWM"]) / 1024,
                    "children_peak": e["children"] / 1024,
                    "raised_children_peak": (e["children"] - before["children"]) / 1024,
                    "descendants_max": e.get("descendants_max", 0) / 1024,
                }
            )
    files: dict[str, dict[str, Any]] = {}
    for t in tests:
        f = files.setdefault(
            _file_of(t["nodeid"]),
            {
                "file": _file_of(t["nodeid"]),
                "tests": 0,
                "rss_before": t["rss_before"],
                "raised_peak": 0.0,
                "held": 0.0,
                "sampled_max": 0.0,
                "raised_children_peak": 0.0,
                "descendants_max": 0.0,
            },
        )
        f["tests"] += 1
        f["rss_after"] = t["rss_after"]
        f["raised_peak"] += t["raised_peak"]
        f["raised_children_peak"] += t["raised_children_peak"]
        f["held"] = max(f["held"], t["sampled_max"] - f["rss_before"])
        f["sampled_max"] = max(f["sampled_max"], t["sampled_max"])
        f["descendants_max"] = max(f["descendants_max"], t["descendants_max"])
    for f in files.values():
        f["not_given_back"] = f["rss_after"] - f["rss_before"]

    def largest(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        return [r for r in sorted(rows, key=lambda r: -r[key])[:top] if r[key] > 0]

    return {
        "tests_run": len(tests),
        "at_start": {"rss": start["VmRSS"] / 1024} if start else None,
        "after_collection": {
            "rss": collected["VmRSS"] / 1024,
            "peak": collected["VmHWM"] / 1024,
            "tests": collected["tests"],
        }
        if collected
        else None,
        "at_end": {"rss": end["VmRSS"] / 1024, "peak": end["VmHWM"] / 1024, "children_peak": end["children"] / 1024}
        if end
        else None,
        "top_raised_peak": largest(tests, "raised_peak"),
        "top_held": largest(tests, "held"),
        "top_raised_children_peak": largest(tests, "raised_children_peak"),
        "top_descendants": largest(tests, "descendants_max"),
        "files": sorted(files.values(), key=lambda f: -f["sampled_max"]),
    }


def _time_v(stderr: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, pattern in (
        ("max_rss_mib", r"Maximum resident set size \(kbytes\): (\d+)"),
        ("elapsed", r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)"),
        ("user_s", r"User time \(seconds\): ([\d.]+)"),
        ("system_s", r"System time \(seconds\): ([\d.]+)"),
    ):
        m = re.search(pattern, stderr)
        if m:
            out[key] = int(m.group(1)) / 1024 if key == "max_rss_mib" else m.group(1)
            if key.endswith("_s"):
                out[key] = float(m.group(1))
    return out


def _outcome(stdout: str) -> str:
    """pytest's last line, e.g. '== 812 passed, 9 skipped in 1503.2s =='."""
    lines = [line for line in stdout.strip().splitlines() if line.startswith("=")]
    return lines[-1].strip("= ") if lines else ""


def run(name: str, pytest_args: list[str], top: int) -> dict[str, Any]:
    from nasseg.latency.measure.device import cpu_name  # not at the top: the plugin's own memory stays nasseg-free

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), str(ROOT / "benchmarks"), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        log, timing = Path(tmp) / "memory.jsonl", Path(tmp) / "time.txt"
        env[LOG_ENV] = str(log)
        command = [
            "/usr/bin/time",
            "-v",
            "-o",
            str(timing),
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "suite_memory",
            *pytest_args,
        ]
        started, commit = time.strftime("%Y-%m-%d %H:%M"), _git_commit()
        load = os.getloadavg()[0]
        proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        print(proc.stdout[-3000:])
        events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        overall = _time_v(timing.read_text()) if timing.exists() else {}
    skipped = sorted({line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")})
    data = {
        "command": "python benchmarks/suite_memory.py run"
        + (f" --name {name}" if name != "full" else "")
        + (" -- " + shlex.join(pytest_args) if pytest_args else ""),
        "pytest": "python -m pytest -p suite_memory " + shlex.join(pytest_args),
        "date": started,
        "git_commit": commit,
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {_memory_gib():.0f} GiB; "
        f"load {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute average)",
        "exit_code": proc.returncode,
        "outcome": _outcome(proc.stdout),
        "skipped": skipped,
        "time_v": overall,
        **summarise(events, top),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"stored {path}")
    return data


def _print(data: dict[str, Any], top: int) -> None:
    print(f"{data['command']}  ({data['date']}, {data['machine']}; commit {data['git_commit']})")
    print(f"  pytest: {data['outcome']} (exit {data['exit_code']}); {data['tests_run']} tests recorded")
    t = data.get("time_v", {})
    if "max_rss_mib" in t:
        print(
            f"  /usr/bin/time -v: maximum resident set size {t['max_rss_mib']:.0f} MiB, "
            f"elapsed {t.get('elapsed')}, user {t.get('user_s')} s, system {t.get('system_s')} s"
        )
    if data.get("at_end"):
        e, c = data["at_end"], data.get("after_collection") or {}
        print(
            f"  pytest process: {c.get('rss', 0):.0f} MiB after collection, {e['rss']:.0f} MiB at the end, "
            f"peak {e['peak']:.0f} MiB; largest child process {e['children_peak']:.0f} MiB"
        )
    tables = (
        ("tests that raise the pytest process's peak most (MiB)", "top_raised_peak", "raised_peak"),
        ("tests that hold most while they run (sampled maximum less RSS before; MiB)", "top_held", "held"),
        ("tests that raise the largest child process's peak (MiB)", "top_raised_children_peak", "raised_children_peak"),
        ("tests whose live child processes hold most together (sampled; MiB)", "top_descendants", "descendants_max"),
    )
    for title, key, field in tables:
        rows = data.get(key, [])[:top]
        if rows:
            print(f"  {title}:")
            for r in rows:
                print(
                    f"    {r[field]:8.0f}  (RSS {r['rss_before']:.0f} -> max {r['sampled_max']:.0f} -> "
                    f"{r['rss_after']:.0f}, peak {r['peak_after']:.0f}, child {r['children_peak']:.0f})  "
                    f"{r['nodeid']}"
                )
    print(
        "  files, by the largest RSS during them (MiB): max, raised peak, held, not given back, children raised,"
        " live children"
    )
    for f in data.get("files", [])[:top]:
        print(
            f"    {f['sampled_max']:7.0f} {f['raised_peak']:7.0f} {f['held']:7.0f} {f['not_given_back']:7.0f} "
            f"{f['raised_children_peak']:7.0f} {f.get('descendants_max', 0):7.0f}  {f['file']} ({f['tests']} tests)"
        )
    kept = sorted(data.get("files", []), key=lambda f: -f["not_given_back"])[:5]
    print(
        "  most memory not given back after a file (MiB): "
        + ", ".join(f"{f['file']} {f['not_given_back']:.0f}" for f in kept if f["not_given_back"] > 0)
    )


def report(top: int) -> None:
    for path in sorted(RESULTS.glob("*.json")):
        _print(json.loads(path.read_text()), top)
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--name", default="full", help="the result file's name (default: full)")
    p.add_argument("--top", type=int, default=20, help="how many offenders to store per table")
    p.add_argument("pytest_args", nargs="*", help="after --: passed to pytest (default: the whole suite)")
    r = sub.add_parser("report")
    r.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    if args.command == "run":
        _print(run(args.name, args.pytest_args, args.top), args.top)
    else:
        report(args.top)


if __name__ == "__main__":
    main()
