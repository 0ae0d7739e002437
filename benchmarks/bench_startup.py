"""Start-up and after-export cost: what a whole process spends besides the network.

    python -m benchmarks.bench_startup [--runs 7] [--cycle-symbols 400] [--latency 0]

Part 1, whole processes (wall time, median of ``--runs``, each a fresh
interpreter as cron or an operator starts it, cwd an empty folder so no
``.env`` is read), side by side with the floor ``python -c pass`` and
``python -c "import pandas"`` measured in the same run:
``--health`` and ``--status`` (of a folder holding one export, and of an
empty one), ``data_export_service.py status``, ``--list-symbols`` and
``--export-only`` of 1 symbol against a sandbox exchange process; for each,
whether pandas was imported (``-X importtime``), and the ``-X importtime``
top entries of ``--health`` and ``--export-only``.

Part 2, the steps of a cycle after the export job, in-process, for
``--cycle-symbols`` symbols (one fresh export each, as ``--export-only``
leaves them): ``ScheduledDataManager.run_cycle(cleanup=False)`` with each
step after the export timed by wrapping it (the folder scan, state.json,
the status report, status.html, the metrics). Best of ``--runs`` cycles.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ROOT,
    SandboxProcess,
    bench_symbols,
    make_settings,
    process_env,
    quiet_logging,
    report_and_save,
    table,
    temp_dir,
)

MANAGER = str(ROOT / "scheduled_data_manager.py")
SERVICE = str(ROOT / "data_export_service.py")
HEAVY = ("pandas", "numpy", "pyarrow")


def _env(base_url: str, export_dir: Path, symbols: Sequence[str]) -> dict[str, str]:
    return process_env(base_url, export_dir, symbols, LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))


def _wall(command: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run(list(command), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, proc.returncode


def importtime(command: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[list[tuple[str, float]], set[str]]:
    """``python -X importtime``: (top-level import, cumulative seconds) largest first, and every module imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *command[1:]], env=env, cwd=cwd, capture_output=True, text=True
    )
    top: dict[str, float] = {}
    every: set[str] = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        every.add(name.strip())
        if not name.startswith("  "):  # nested ones are counted in their importer's cumulative time
            top[name.strip()] = int(cumulative) / 1e6
    return sorted(top.items(), key=lambda kv: -kv[1]), every


def _processes(args: argparse.Namespace, work: Path, base_url: str) -> dict[str, Any]:
    folder, empty = work / "exports", work / "empty"
    env = _env(base_url, folder, ["BTCUSDT"])
    empty_env = _env(base_url, empty, ["BTCUSDT"])
    # One export first: --health and --status then judge a real folder (one file, state, status).
    seeded = subprocess.run([sys.executable, MANAGER, "--export-only"], env=env, cwd=work, capture_output=True)
    if seeded.returncode != 0:
        raise RuntimeError(f"the first export failed: {seeded.stderr.decode(errors='replace')[-500:]}")
    py = sys.executable
    commands: list[tuple[str, list[str], dict[str, str]]] = [
        ("python -c pass (floor)", [py, "-c", "pass"], env),
        ('python -c "import pandas"', [py, "-c", "import pandas"], env),
        ("--health, empty folder", [py, MANAGER, "--health"], empty_env),
        ("--health, 1 export", [py, MANAGER, "--health"], env),
        ("--status, empty folder", [py, MANAGER, "--status"], empty_env),
        ("--status, 1 export", [py, MANAGER, "--status"], env),
        ("data_export_service.py status", [py, SERVICE, "status"], env),
        ("--list-symbols", [py, MANAGER, "--list-symbols"], env),
        ("--export-only, 1 symbol", [py, MANAGER, "--export-only"], env),
    ]
    rows: list[dict[str, Any]] = []
    for name, command, command_env in commands:
        walls, codes = [], set()
        for _ in range(args.runs):
            wall, code = _wall(command, command_env, work)
            walls.append(wall)
            codes.add(code)
        _, loaded = importtime(command, command_env, work)
        rows.append(
            {
                "command": name,
                "median_s": statistics.median(walls),
                "min_s": min(walls),
                "exit_codes": sorted(codes),
                "imports_pandas": "pandas" in loaded,
            }
        )
    tops = {
        "--health, 1 export": importtime([py, MANAGER, "--health"], env, work)[0][: args.top],
        "--export-only, 1 symbol": importtime([py, MANAGER, "--export-only"], env, work)[0][: args.top],
    }
    return {"runs": args.runs, "commands": rows, "importtime_top": tops}


# -- part 2: the steps after the export job, in-process ------------------------------
STEPS = (
    (
        "crypto_data_export.scheduler.manager",
        "ScheduledDataManager",
        "write_status",
        "status: all (report, page, metrics)",
    ),
    ("crypto_data_export.store.files", "FileManager", "scan", "  folder scan (known files not read)"),
    ("crypto_data_export.store.files", "FileManager", "validate_all", "  validations"),
    ("crypto_data_export.report.status_report", None, "recorded_statistics", "  file statistics"),
    ("crypto_data_export.report.status_report", None, "build_status_report", "  build the report"),
    ("crypto_data_export.report.status_report", None, "write_status_report", "  write status_report.json"),
    (
        "crypto_data_export.scheduler.manager",
        "ScheduledDataManager",
        "publish_page",
        "  status.html (closes + render + write)",
    ),
    ("crypto_data_export.scheduler.manager", None, "write_metrics", "  metrics file"),
    ("crypto_data_export.scheduler.manager", None, "update_state", "state.json (update under its lock)"),
)


def _timed(owner: Any, attribute: str, spent: dict[str, float], label: str) -> Callable[[], None]:
    """Wrap ``owner.attribute`` so each call adds its wall time to ``spent[label]``; returns the undo.

    Calls made inside the export job (its threads scan and prune too) are not counted here.
    """
    original = getattr(owner, attribute)

    def wrapper(*a: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            if label == EXPORT_JOB or not spent.get(_INSIDE_EXPORT):
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started

    setattr(owner, attribute, wrapper)
    return lambda: setattr(owner, attribute, original)


EXPORT_JOB, _INSIDE_EXPORT = "export job", "_inside"


def _export_marked(original: Callable[..., Any], spent: dict[str, float]) -> Callable[..., Any]:
    def step(*a: Any, **kw: Any) -> Any:
        spent[_INSIDE_EXPORT] = 1.0
        try:
            return original(*a, **kw)
        finally:
            spent[_INSIDE_EXPORT] = 0.0

    return step


def _after_export(args: argparse.Namespace, work: Path, base_url: str) -> dict[str, Any]:
    import importlib

    from crypto_data_export.scheduler.manager import ScheduledDataManager

    quiet_logging()
    symbols = bench_symbols(args.cycle_symbols)
    best: dict[str, float] | None = None
    walls: list[float] = []
    for run in range(args.runs):
        folder = work / f"cycle-{run}"
        settings = make_settings(base_url, folder, symbols, EXPORT_WORKERS="16")
        manager = ScheduledDataManager(settings)
        spent: dict[str, float] = {}
        undo = []
        for module, cls, attribute, label in STEPS:
            owner = importlib.import_module(module)
            undo.append(_timed(getattr(owner, cls) if cls else owner, attribute, spent, label))
        undo.append(_timed(ScheduledDataManager, "_export_step", spent, EXPORT_JOB))
        ScheduledDataManager._export_step = _export_marked(ScheduledDataManager._export_step, spent)
        try:
            started = time.perf_counter()
            report = manager.run_cycle(cleanup=False)
            wall = time.perf_counter() - started
        finally:
            for restore in undo:
                restore()
        if report.exit_code != 0:
            raise RuntimeError(f"the cycle failed with {report.exit_code}")
        spent.pop(_INSIDE_EXPORT, None)
        spent["whole cycle"] = wall
        spent["after the export job"] = wall - spent[EXPORT_JOB]
        walls.append(wall)
        if best is None or spent["after the export job"] < best["after the export job"]:
            best = spent
        shutil.rmtree(folder, ignore_errors=True)
    assert best is not None
    return {"symbols": args.cycle_symbols, "latency_s": args.latency, "steps_s": best}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_startup", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (median) and cycles (best)")
    parser.add_argument("--cycle-symbols", type=int, default=400, help="symbols of the in-process cycle (0: skip)")
    parser.add_argument("--latency", type=float, default=0.0, help="the sandbox's latency in seconds")
    parser.add_argument("--top", type=int, default=8, help="-X importtime entries to show")
    args = parser.parse_args(argv)
    work = temp_dir("startup")
    try:
        with SandboxProcess(latency=args.latency) as sandbox:
            processes = _processes(args, work, sandbox.base_url)
            cycle = _after_export(args, work, sandbox.base_url) if args.cycle_symbols else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = processes["commands"]
    floor = rows[0]["median_s"]
    print(f"\nbench_startup: whole processes, median of {args.runs} (sandbox latency {args.latency * 1000:.0f} ms)")
    print(
        table(
            ["command", "median s", "min s", "over `python -c pass` s", "imports pandas", "exit"],
            [
                [r["command"], r["median_s"], r["min_s"], r["median_s"] - floor, r["imports_pandas"], r["exit_codes"]]
                for r in rows
            ],
        )
    )
    for name, top in processes["importtime_top"].items():
        print(f"\n-X importtime, top-level imports of {name}:")
        print(table(["module", "cumulative s"], top))
    figures: dict[str, Any] = {"processes": processes, "after_export": cycle}
    if cycle is not None:
        print(f"\nafter the export job, {cycle['symbols']} symbols in-process (best of {args.runs} cycles):")
        print(table(["step", "s"], list(cycle["steps_s"].items())))
    by_name = {r["command"]: r for r in rows}
    light = ("--health, empty folder", "--status, empty folder", "data_export_service.py status", "--list-symbols")
    targets = {"no_pandas_without_candles": not any(by_name[n]["imports_pandas"] for n in light)}
    return report_and_save("bench_startup", figures, targets)


if __name__ == "__main__":
    main()
