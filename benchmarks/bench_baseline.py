"""The cycle's figures, ours and f7f42c8 (before issue 21) side by side in one run.

    python -m benchmarks.bench_baseline [--baseline PATH] [--repeat 3] [--symbols 400] [--files 10000]

Issue 21 asks that every figure be kept or beaten. The figures recorded before it came from
other days on a shared machine (the same f7f42c8 code took 2.9 s for the steady cycle then
and 3.8 s on the day this benchmark was written), so both trees are measured here, in the
same run, alternating ours and the baseline ``--repeat`` times. Each measurement is a fresh
interpreter with the tree as cwd, running that tree's own benchmark code (so each drives its
own API); the baseline worktree is made if missing (``bench_read_check.ensure_baseline``).

1. **Whole ``--export-only`` process**, 400 symbols at 150 ms, the real 6000/min budget
   (``bench_limiter.run_process``): wall and CPU of the child.
2. **Steady cycle** (``bench_steady``): the wall time of the second cycle (one new candle per
   symbol), in-process.
3. **Cleanup + validation of 10 000 files** (``bench_files.bench_many_files``):
   ``FileManager.cleanup()`` wall.

Medians of ``--repeat``. **Target**: ours <= the baseline's median for each (ratio shown).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks._common import ROOT, report_and_save, table
from benchmarks.bench_read_check import DEFAULT_BASELINE, ensure_baseline

# Each probe runs in a tree (cwd = its root) and prints one JSON line last.
PROBES = {
    "process": """
import json, sys
from benchmarks._common import bench_symbols
from benchmarks.bench_limiter import SandboxConfig, run_process
cfg = SandboxConfig(latency_seconds=0.15, weight_limit=6000, weight_window="sliding", accept_any_symbol=True)
run = run_process(bench_symbols(int(sys.argv[1])), cfg)
assert run["exit_code"] == 0, run
print(json.dumps({"wall_s": run["wall_s"], "cpu_s": run["cpu_s"]}))
""",
    "steady": """
import json, sys
from benchmarks.bench_steady import main
second = main(["--symbols", sys.argv[1]])["figures"]["runs"][1]
assert second["symbols_failed"] == 0, second
print(json.dumps({"wall_s": second["wall_s"]}))
""",
    "cleanup": """
import json, sys
from benchmarks.bench_files import bench_many_files
print(json.dumps({"wall_s": bench_many_files(int(sys.argv[2]))["runs"]["cleanup"]["wall_s"]}))
""",
}
WHAT = {
    "process": "whole --export-only process, 400 symbols, 150 ms",
    "steady": "steady cycle (cycle 2), 400 symbols",
    "cleanup": "cleanup + validation, 10000 files",
}


def probe(tree: Path, what: str, symbols: int, files: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBES[what], str(symbols), str(files)],
        cwd=str(tree),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"{what} in {tree} failed: {done.stderr.strip().splitlines()[-3:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="worktree of f7f42c8 (made if missing)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--symbols", type=int, default=400)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args(argv)
    trees = {"ours": ROOT, "f7f42c8": ensure_baseline(args.baseline)}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {w: {t: [] for t in trees} for w in PROBES}
    for _ in range(args.repeat):
        for what in PROBES:
            for name, tree in trees.items():  # alternated: a slow minute of the machine hits both
                runs[what][name].append(probe(tree, what, args.symbols, args.files))
                print(f"{what:8} {name:8} {runs[what][name][-1]}", flush=True)
    figures: dict = {"repeat": args.repeat, "symbols": args.symbols, "files": args.files, "runs": runs}
    rows = []
    targets = {}
    for what in PROBES:
        medians = {t: statistics.median(r["wall_s"] for r in runs[what][t]) for t in trees}
        figures[what] = {"ours_wall_s": medians["ours"], "baseline_wall_s": medians["f7f42c8"]}
        if what == "process":
            for t, key in (("ours", "ours_cpu_s"), ("f7f42c8", "baseline_cpu_s")):
                figures[what][key] = statistics.median(r["cpu_s"] for r in runs[what][t])
        ratio = medians["f7f42c8"] / medians["ours"]
        figures[what]["speedup"] = ratio
        targets[f"{what} <= f7f42c8"] = medians["ours"] <= medians["f7f42c8"]
        rows.append([WHAT[what], f"{medians['ours']:.2f} s", f"{medians['f7f42c8']:.2f} s", f"{ratio:.2f}x"])
    print(table(["median of the runs", "ours", "f7f42c8", "speed-up"], rows))
    return report_and_save("bench_baseline", figures, targets)


if __name__ == "__main__":
    main()
