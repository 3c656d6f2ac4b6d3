"""Every backend x workload, keg_storage side by side with the raw SDK (and rclone for sync).

Run from the repository root::

    .venv/bin/python bench/compare.py                      # everything, medians of 5
    .venv/bin/python bench/compare.py --runs 3 --backends s3 azure --workloads upload download
    .venv/bin/python bench/compare.py --quick              # small sizes, 1 run: a smoke test
    .venv/bin/python bench/compare.py --json results.json  # also every run, machine-readable

It starts the servers it needs (SeaweedFS, Azurite, sshd: the test harness in tests/servers),
writes the local data once, then runs each case ``--warmup`` times untimed (1 by default: the
first run of new data pays the servers' set-up) and ``--runs`` times timed, keg_storage and the
raw side alternating run by run (keg first on odd runs, raw first on even ones) so that load
from elsewhere on the machine touches both alike. Every run is a fresh child process, so its
peak RSS (VmHWM, bench/rss.py) is its own. The ratio is the raw side's median time over
keg_storage's: above 1.0x keg_storage is faster. Its spread is the lowest and highest ratio of
the runs paired by number. Nothing is asserted: this is a measurement, not a test.

Page cache: the local files are written before the first run and stay in the page cache (this
script drops no cache: that needs root and would slow every other process on the machine);
dirty pages are flushed with ``sync`` before every run, so that one run's write-back does not
land in the next one's time. Both sides read hot local files.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this directory would come first on sys.path and bench/azure.py would shadow
# the Azure SDK's ``azure`` package: put the repository root there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench.compare_report import print_report, write_json  # noqa: E402
from bench.compare_targets import TARGETS, make_target, running_servers  # noqa: E402
from bench.compare_workloads import (  # noqa: E402
    MIB,
    WORKLOADS,
    Job,
    Settings,
    find,
    make_local_data,
    raw_label,
)
from bench.rss import peak_rss_mib  # noqa: E402

BACKENDS = ("s3", "azure", "sftp", "localfs", "memory")
QUICK = {
    "sizes": (MIB,),
    "small_count": 20,
    "exists_count": 50,
    "sync_small_count": 20,
    "sync_large_count": 2,
    "sync_large_size": MIB,
}


@dataclass
class Case:
    """One row of the table: a workload on a backend in one variant, and its runs."""

    workload: str
    backend: str
    variant: str
    fields: dict[str, Any]
    raw: str = ""  # what the raw side calls; empty: keg_storage alone
    skipped: str = ""  # why the case did not run
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"keg": [], "raw": []})


def plan(args: argparse.Namespace, settings: Settings, ctx: dict[str, Any]) -> list[Case]:
    cases = []
    for workload in WORKLOADS:
        if workload.name not in args.workloads:
            continue
        for backend in args.backends:
            if backend not in workload.backends:
                continue
            for variant, fields in workload.variants(backend, settings):
                if fields.get("source_backend", backend) not in [*args.backends, "localfs"]:
                    continue
                scratch = str(Path(settings.work, "scratch"))
                case = Case(workload.name, backend, variant, {**fields, "scratch": scratch})
                case.raw = raw_label(workload, TARGETS[backend](ctx)) if workload.raw else ""
                if workload.raw_kind == "rclone" and not shutil.which("rclone"):
                    case.raw = "rclone not installed (sudo apt-get install -y rclone)"
                cases.append(case)
    return cases


def run_child(job: Job, ctx: dict[str, Any]) -> dict[str, Any]:
    """One timed run in a fresh interpreter: its parts' seconds and its peak RSS."""
    os.sync()
    payload = json.dumps({"job": asdict(job), "ctx": ctx})
    child = subprocess.run(
        [sys.executable, __file__, "--child", payload], capture_output=True, text=True, cwd=ROOT
    )
    if child.returncode:
        raise SystemExit(f"{job.workload} on {job.backend} ({job.side}) failed:\n{child.stderr}")
    result: dict[str, Any] = json.loads(child.stdout.splitlines()[-1])
    return result


def child_main(payload: str) -> None:
    data = json.loads(payload)
    job = Job(**data["job"])
    target = make_target(job.backend, data["ctx"])
    workload = find(job.workload)
    if workload.prepare:
        workload.prepare(target, job)
    if job.side == "raw":
        assert workload.raw is not None
        target.warm_raw()
        parts = workload.raw(target, job)
    else:
        target.keg()
        parts = workload.keg(target, job)
    print(json.dumps({"parts": parts, "peak_rss_mib": peak_rss_mib()}))


def measure(
    cases: list[Case],
    ctx: dict[str, Any],
    runs: int,
    warmup: int,
    checkpoint: Callable[[], None],
) -> None:
    """Run every case ``warmup`` times untimed, then ``runs`` times, keg and raw alternating
    which goes first; call ``checkpoint`` after each case, so that a run cut short keeps what
    it measured. The first run of a case pays what the servers and the machine do once for new
    data (SeaweedFS allocates volumes, the page cache fills): whichever side went first lost
    a second to it in runs of 4 x 64 MiB, so it is not timed."""
    for case in cases:
        sides = [] if case.skipped else ["keg"]
        if case.raw and not case.raw.startswith("rclone not"):
            sides.append("raw")
        for number in range(-warmup, runs):
            for side in sides if number % 2 == 0 else sides[::-1]:
                job = Job(case.backend, case.workload, side, number, **case.fields)
                result = run_child(job, ctx)
                seconds = sum(result["parts"].values())
                label = f"run {number + 1}" if number >= 0 else "warm-up"
                if number >= 0:
                    case.runs[side].append(result)
                print(
                    f"  {case.workload} {case.backend} {case.variant} {label} {side}: "
                    f"{seconds:.3f} s",
                    file=sys.stderr,
                )
        checkpoint()


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args.child)
        return
    if args.report:
        saved_cases, saved_conditions = load_json(Path(args.report))
        print_report(saved_cases, saved_conditions, args.format)
        return
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="keg-compare-") as work:
        settings = make_settings(args, work)
        with running_servers(args.backends, Path(work)) as ctx:
            make_local_data(settings)
            cases = plan(args, settings, ctx)

            def save() -> None:
                if args.json:
                    write_json(Path(args.json), cases, conditions(args, started, load_before))

            measure(cases, ctx, args.runs, args.warmup, save)
    print_report(cases, conditions(args, started, load_before), args.format)
    save()


def conditions(
    args: argparse.Namespace, started: float, load_before: tuple[float, ...]
) -> dict[str, Any]:
    """What the figures were measured under, printed above the table and saved in the JSON."""
    return {
        "command": shlex.join(["bench/compare.py", *sys.argv[1:]]),
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "minutes": round((time.time() - started) / 60, 1),
    }


def load_json(path: Path) -> tuple[list[Case], dict[str, Any]]:
    """The cases and conditions a ``--json`` file holds, to print their table again."""
    data = json.loads(path.read_text())
    names = ("workload", "backend", "variant", "raw", "skipped", "runs")
    cases = [Case(fields={}, **{name: case[name] for name in names}) for case in data["cases"]]
    return cases, data["conditions"]


def make_settings(args: argparse.Namespace, work: str) -> Settings:
    if args.quick:
        return Settings(work, **QUICK)  # type: ignore[arg-type]
    return Settings(work, sizes=tuple(size * MIB for size in args.sizes))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [workload.name for workload in WORKLOADS]
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--workloads", nargs="+", default=names, choices=names)
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256], help="MiB")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs of each side before the timed ones"
    )
    parser.add_argument("--json", help="also write every run to this file")
    parser.add_argument("--format", choices=("rst", "markdown"), default="rst")
    parser.add_argument("--quick", action="store_true", help="1 MiB, 20 small files, 1 run")
    parser.add_argument("--report", help="print the table of a --json file, measuring nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.warmup = 1, 0
    return args


if __name__ == "__main__":
    main()
