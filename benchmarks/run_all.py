"""``make bench``: every benchmark in turn, each a script of its own (see docs/benchmarks.md).

Each figure is a ratio against a baseline measured in the same run (our training loop vs a bare
torch loop, compiled vs eager training, our claims vs a raw SKIP LOCKED loop, the queue's
requests under load vs GET /health, our query vs MLflow's search_runs), since this machine is
shared and noisy. ``--quick`` shrinks
every benchmark to a smoke run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "bench_training.py": [],
    "bench_tasks.py": [],
    "bench_compile.py": ["--steps", "30", "--rounds", "2"],
    "bench_claims.py": ["--clients", "8", "--seconds", "5"],
    "bench_load_queue.py": ["--workers", "8", "--runs", "2000", "--serve-workers", "4"],
    "bench_query_mlflow.py": ["--runs", "100000", "--postgres"],
    "bench_query.py": ["--runs", "100000", "--postgres"],
    "bench_pages.py": ["--runs", "10000"],
    "bench_planner.py": ["--runs", "100000,1000000", "--postgres", "--ablate", "--probes"],
}
#: Smoke runs (the test suite runs each: tests/benchmarks): every code path, tiny sizes.
#: The two query benchmarks share their stores (same --runs and --client-runs).
QUICK_STORE = ["--runs", "300", "--client-runs", "30", "--repeat", "1"]
QUICK = {
    "bench_training.py": ["--steps", "5", "--rounds", "1", "--budget", "10"],
    "bench_tasks.py": ["--steps", "4", "--rounds", "1", "--budget", "5"],
    "bench_compile.py": ["--steps", "5", "--rounds", "1", "--arch", "llama", "--dim", "32"],
    "bench_claims.py": [
        "--clients",
        "2",
        "--seconds",
        "1",
        "--runs",
        "2000",
        "--latency-runs",
        "1",
    ],
    "bench_load_queue.py": ["--quick"],
    "bench_query_mlflow.py": [*QUICK_STORE, "--mlflow-repeat", "1", "--postgres"],
    "bench_query.py": [*QUICK_STORE, "--postgres"],
    "bench_pages.py": ["--runs", "1000", "--repeat", "3"],
    "bench_planner.py": ["--quick", "--postgres", "--ablate", "--probes"],
}


def command(script: str, extra: list[str]) -> list[str]:
    """The command line that runs benchmark ``script`` with ``extra`` arguments."""
    return [sys.executable, str(HERE / script), *extra]


def main() -> int:
    """Run the benchmarks named (default: all); non-zero if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="e.g. bench_training.py (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    failed = []
    for script, extra in plan.items():
        if args.names and script not in args.names:
            continue
        print(f"\n=== {script} {' '.join(extra)}", flush=True)
        done = subprocess.run(command(script, extra), cwd=HERE.parent)
        if done.returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
