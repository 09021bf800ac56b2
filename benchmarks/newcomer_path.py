"""The newcomer's path, timed: from a fresh clone to an open dashboard, as the README's "Start here" goes.

    python benchmarks/newcomer_path.py run        # an install and a tiny search: an hour or more beside other work
    python benchmarks/newcomer_path.py report     # print every stored result again, as a table

``run`` does what a newcomer does, each step timed on its own (wall seconds, and the CPU seconds of the
step's processes as the kernel counts finished, waited-for children: a figure the machine's other work
does not inflate much):

1. ``clone``: ``git clone`` of this repository's current commit (HEAD) into a temporary folder beside
   this one, so that ``../shared/data/CamVid`` resolves from the clone as it does from here. The clone
   is local (from this folder), so no network time is in it.
2. ``venv``: ``python -m venv .venv`` in the clone, with the Python that runs this script.
3. ``install``: the README's install command (command 1 of "Start here", read from the clone's README
   by ``tests/test_readme.py``'s ``readme_commands``) run with the venv's pip, in the clone.
4. ``search``: the README's main command (command 3 of "Start here") with the venv's ``nasseg``.
5. ``dashboard``: ``nasseg dashboard <study> -o newcomer-dashboard.html``, the study being the one the
   search made (its folder under the clone's ``studies/``; nasseg names it ``<space>-<target>``).
6. ``browser``: the venv's Python opens the page in headless Chromium (``nasseg.viz.browser``) and waits
   until every plot is drawn; a JavaScript error, or a page without plots, fails the run.

Step 2 of "Start here" (the test suite) is not on the path to an open dashboard and is not run here:
``.ci/run`` runs and times it. Every command runs as if the venv were activated (its ``bin`` first on
PATH, ``VIRTUAL_ENV`` set) without PYTHONPATH or NASSEG_* variables, so nothing of this checkout leaks in.
pip may take wheels from its cache and from the local wheel folders and indexes this machine's pip
configuration names; the result says what pip's cache held and where pip's packages came from, since a
machine that downloads everything takes longer. The load average is recorded at the start, before every
step and at the end: the development machine is shared. Results go to benchmarks/results/newcomer_path/;
the temporary folder is removed afterwards (``--keep`` leaves it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nasseg.latency.measure.device import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "newcomer_path"
DASHBOARD = "newcomer-dashboard.html"
STEPS = ("clone", "venv", "install", "search", "dashboard", "browser")

# Run by the venv's Python: open the page, wait for every plot, report the plots and the browser's errors.
BROWSER_SCRIPT = """
import json, sys, time
from pathlib import Path
from nasseg.viz.browser import headless_chromium

page, shot = Path(sys.argv[1]), Path(sys.argv[2])
started = time.perf_counter()
with headless_chromium() as browser:
    launched = time.perf_counter()
    plots, log = browser.open_plots(page, shot, "return Array.from(document.querySelectorAll('.js-plotly-plot'))"
                                    ".map(g => ({id: g.id, traces: g._fullData.length}))", full_page=False)
    drawn = time.perf_counter()
    version = browser.driver.capabilities.get('browserVersion')
print(json.dumps({"plots": plots, "errors": [e for e in log if e.get("level") == "SEVERE"],
                  "launch_s": launched - started, "draw_s": drawn - launched, "chromium": version}))
"""


def start_here(readme: Path) -> tuple[str, str]:
    """The install command (1) and the main command (3) of the README's "Start here" block."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_readme import readme_commands  # the README parsing the README test uses

    commands = readme_commands(readme, "Start here")
    if len(commands) < 3 or not commands[0].startswith("pip install") or not commands[2].startswith("nasseg search"):
        raise SystemExit(f"{readme}: 'Start here' is not install, tests, main command: {commands}")
    return commands[0], commands[2]


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) if path.is_dir() else 0


def _pip_cache() -> dict[str, Any]:
    """pip's cache folder (as pip reports it for this user) and what it holds now."""
    done = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
    folder = Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None
    return {
        "dir": str(folder) if folder else None,
        "exists": bool(folder and folder.is_dir()),
        "bytes": _du(folder) if folder else 0,
    }


def _pip_sources() -> dict[str, Any]:
    """Where this machine's pip looks besides PyPI (``pip config list``: find-links, index URLs)."""
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    keys = ("index-url", "extra-index-url", "find-links", "no-index", "constraint")
    return {
        line.split("=", 1)[0]: line.split("=", 1)[1].strip("'")
        for line in done.stdout.splitlines()
        if "=" in line and line.split("=", 1)[0].rsplit(".", 1)[-1] in keys
    }


def pip_origins(output: str) -> dict[str, Any]:
    """Where the install took each file from, read from pip's (default, not verbose) output. pip prints
    "Processing <path>" for a file on this machine (a wheel folder or a file:// index), and "Downloading
    <what> (<size>)" or "Using cached <what>" for one fetched over HTTP, <what> being the bare file name
    for PyPI's file host (files.pythonhosted.org) and the URL for any other."""
    units = {"kB": 1e3, "MB": 1e6, "GB": 1e9, "B": 1}
    fetched: dict[str, list[str]] = {"downloaded": [], "from_pip_cache": []}
    hosts: dict[str, int] = {}
    size = 0.0
    for verb, what, n, unit in re.findall(
        r"^\s*(Downloading|Using cached) (\S+)(?: \(([\d.]+) (kB|MB|GB|B)\))?", output, flags=re.M
    ):
        fetched["downloaded" if verb == "Downloading" else "from_pip_cache"].append(what.rsplit("/", 1)[-1])
        if verb == "Downloading":
            host = what.split("/")[2] if "://" in what else "files.pythonhosted.org"
            hosts[host] = hosts.get(host, 0) + 1
            size += float(n) * units[unit] if n else 0
    local = [Path(f).name for f in re.findall(r"^Processing (/\S+)", output, flags=re.M)]
    return {
        "local_files": len(local),
        "downloaded": len(fetched["downloaded"]),
        "downloaded_from": hosts,
        "downloaded_bytes": int(size),
        "from_pip_cache": len(fetched["from_pip_cache"]),
        "files": {"local": local, **fetched},
        "warnings": [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR"))],
    }


def _cpu_seconds() -> float:
    """CPU seconds of every finished child process (and theirs) so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _activated(venv: Path) -> dict[str, str]:
    """The environment of a shell with the venv activated, and nothing of this checkout in it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("NASSEG_")
    }
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _in_venv(venv: Path, command: str) -> list[str]:
    """A README command as written, its program taken from the venv's bin (which must have it)."""
    argv = shlex.split(command)
    program = venv / "bin" / argv[0]
    if not program.exists():
        raise SystemExit(f"{argv[0]} is not in {venv / 'bin'}: the install did not provide it")
    return [str(program), *argv[1:]]


class Walk:
    """The steps of one run, each timed and recorded; a failing step stops the run."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def step(
        self,
        name: str,
        command: str,
        argv: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout_s: float = 3600,
    ) -> str:
        load, started, cpu = _load(), time.perf_counter(), _cpu_seconds()
        try:
            done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = None, f"did not finish in {timeout_s:.0f} s: {exc.output!r}"
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        self.steps.append(
            {
                "step": name,
                "command": command,
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "load_before": load,
                "exit_code": code,
            }
        )
        print(f"  {name}: {wall:.1f} s, {cpu:.1f} s CPU (exit {code}, load {load[0]:.2f})", flush=True)
        if code != 0:
            raise StepFailed(name, output)
        return output


class StepFailed(Exception):
    def __init__(self, step: str, output: str) -> None:
        super().__init__(f"step {step} failed:\n{output[-3000:]}")
        self.step = step


def run(keep: bool = False, step_timeout_s: float = 4 * 3600) -> tuple[dict[str, Any], Path]:
    commit = _git("rev-parse", "HEAD")
    cache_before, sources = _pip_cache(), _pip_sources()
    load_start, started_at = _load(), datetime.now()
    folder = Path(tempfile.mkdtemp(prefix="nasseg-newcomer-", dir=ROOT.parent))
    clone, venv = folder, folder / ".venv"
    walk = Walk()
    found: dict[str, Any] = {}
    failure = None
    print(f"the newcomer's path in {clone} (commit {commit[:10]})", flush=True)
    try:
        walk.step(
            "clone",
            f"git clone {ROOT} && git checkout {commit[:10]}",
            [
                "bash",
                "-c",
                f"git clone --quiet --no-checkout {shlex.quote(str(ROOT))} . && git checkout --quiet {commit}",
            ],
            cwd=clone,
        )
        install, main = start_here(clone / "README.md")
        walk.step("venv", "python -m venv .venv", [sys.executable, "-m", "venv", str(venv)], cwd=clone)
        env = _activated(venv)
        output = walk.step("install", install, _in_venv(venv, install), cwd=clone, env=env, timeout_s=step_timeout_s)
        found["pip"] = pip_origins(output)
        before = {p.parent.name for p in (clone / "studies").glob("*/study.db")}
        output = walk.step("search", main, _in_venv(venv, main), cwd=clone, env=env, timeout_s=step_timeout_s)
        found["search_output_tail"] = [line.rstrip() for line in output.strip().splitlines()[-12:]]
        made = sorted({p.parent.name for p in (clone / "studies").glob("*/study.db")} - before)
        if len(made) != 1:
            raise StepFailed("search", f"expected one new study under studies/, found {made}")
        found["study"] = made[0]
        dashboard = f"nasseg dashboard {made[0]} -o {DASHBOARD}"
        walk.step("dashboard", dashboard, _in_venv(venv, dashboard), cwd=clone, env=env)
        found["html_bytes"] = (clone / DASHBOARD).stat().st_size
        output = walk.step(
            "browser",
            f"headless Chromium opens {DASHBOARD} until every plot is drawn",
            [str(venv / "bin" / "python"), "-c", BROWSER_SCRIPT, DASHBOARD, "newcomer-dashboard.png"],
            cwd=clone,
            env=env,
            timeout_s=600,
        )
        page = json.loads(output.strip().splitlines()[-1])
        found["page"] = {
            "plots": page["plots"],
            "javascript_errors": page["errors"],
            "chromium": page["chromium"],
            "chromium_launch_s": round(page["launch_s"], 1),
            "draw_s": round(page["draw_s"], 1),
        }
        if page["errors"] or not page["plots"]:
            raise StepFailed("browser", f"JavaScript errors {page['errors']}, plots {page['plots']}")
        found["venv_python"] = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sys, torch; print(sys.version.split()[0], torch.__version__)"],
            env=env,
            capture_output=True,
            text=True,
        ).stdout.split()
    except StepFailed as exc:
        failure = str(exc)
        print(failure, file=sys.stderr)
    finally:
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    data = {
        "what": "the newcomer's path: a fresh clone to an open dashboard, the README's Start here",
        "date": started_at.isoformat(timespec="minutes"),
        "commit": commit,
        "worktree_dirty": bool(_git("status", "--porcelain")),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "load_average_start": load_start,
        "load_average_end": _load(),
        "steps": walk.steps,
        "total_s": round(sum(s["wall_s"] for s in walk.steps), 1),
        "completed": failure is None and [s["step"] for s in walk.steps] == list(STEPS),
        "failure": failure,
        "pip_cache_before": cache_before,
        "pip_cache_after": _pip_cache(),
        "pip_config": sources,
        **found,
        "not_included": [
            "step 2 of Start here (the test suite; .ci/run runs it)",
            "downloading the repository (the clone is local)",
            "installing Python, git or Chromium",
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"newcomer-{started_at:%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"stored {out}")
    return data, out


def _print(name: str, data: dict[str, Any]) -> None:
    m, pip = data["machine"], data.get("pip", {})
    print(
        f"{name}: {data['date']}, commit {data['commit'][:10]}, {m['cpu']}, {m['cores']} cores, load average "
        f"{data['load_average_start'][0]:.2f} at the start, {data['load_average_end'][0]:.2f} at the end"
    )
    print("| step | wall s | CPU s | load before | command |")
    print("|---|---|---|---|---|")
    for s in data["steps"]:
        failed = "" if s["exit_code"] == 0 else f" (exit {s['exit_code']})"
        print(
            f"| {s['step']} | {s['wall_s']:.1f}{failed} | {s['cpu_s']:.1f} | {s['load_before'][0]:.2f} "
            f"| `{s['command']}` |"
        )
    end = "to an open dashboard" if data["completed"] else "NOT COMPLETED"
    print(f"| **total** | **{data['total_s']:.1f}** | {sum(s['cpu_s'] for s in data['steps']):.1f} | | {end} |")
    cache = data["pip_cache_before"]
    print(
        f"pip's cache {cache['dir']}: {'exists' if cache['exists'] else 'missing'}, {cache['bytes'] / 1e6:.1f} MB "
        f"before, {data['pip_cache_after']['bytes'] / 1e6:.1f} MB after"
    )
    if pip:
        hosts = ", ".join(f"{n} from {h}" for h, n in pip["downloaded_from"].items())
        mb = pip["downloaded_bytes"] / 1e6
        print(
            f"install: {pip['local_files']} files from this machine's wheel folders, {pip['downloaded']} downloaded"
            + (f" ({hosts}; {mb:.0f} MB)" if hosts else "")
            + f", {pip['from_pip_cache']} from pip's cache"
        )
    if "page" in data:
        p = data["page"]
        print(
            f"page: study {data['study']}, {data['html_bytes'] / 1e6:.1f} MB, {len(p['plots'])} plots drawn "
            f"({p['draw_s']} s after Chromium {p['chromium']} started in {p['chromium_launch_s']} s), "
            f"{len(p['javascript_errors'])} JavaScript errors"
        )
    if data["failure"]:
        print(f"failure: {data['failure']}")


def report() -> int:
    stored = sorted(RESULTS.glob("*.json"))
    if not stored:
        print(f"no stored result in {RESULTS}: run `python benchmarks/newcomer_path.py run`", file=sys.stderr)
        return 1
    for i, path in enumerate(stored):
        if i:
            print()
        _print(path.name, json.loads(path.read_text()))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="walk the path once and store the result")
    r.add_argument("--keep", action="store_true", help="leave the temporary clone (and its venv) in place")
    r.add_argument("--step-timeout", type=float, default=4 * 3600, help="seconds the install or the search may take")
    sub.add_parser("report", help="print every stored result again")
    args = parser.parse_args()
    if args.command == "run":
        data, out = run(args.keep, args.step_timeout)
        _print(out.name, data)
        sys.exit(0 if data["completed"] else 1)
    sys.exit(report())


if __name__ == "__main__":
    main()
