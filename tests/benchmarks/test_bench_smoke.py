"""Every benchmark's smoke run (``run_all.QUICK``), so a move that breaks one fails the suite.

Each script runs as ``make bench ARGS=--quick`` runs it (``run_all.command``), in a process
of its own, with its cached stores in a folder of this module (not the checkout's var/bench).
Only the exit status is asserted: timings on a shared machine are no test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import run_all
from benchmarks.bench_query_mlflow import drop_postgres_stores
from tests.support.dbs import postgres_available, require_postgres
from tests.support.procs import start

#: Benchmarks that use PostgreSQL whatever their arguments say.
ALWAYS_POSTGRES = {"bench_claims.py", "bench_load_queue.py"}
#: Seconds one smoke run may take (together they take about two minutes here).
TIMEOUT = 300.0


def _needs_postgres(script: str, extra: list[str]) -> bool:
    return script in ALWAYS_POSTGRES or "--postgres" in extra


def _params() -> list[object]:
    return [
        pytest.param(
            script,
            extra,
            id=script.removesuffix(".py"),
            marks=[pytest.mark.postgres] if _needs_postgres(script, extra) else [],
        )
        for script, extra in run_all.QUICK.items()
    ]


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder for the module, so the two query benchmarks share their stores; the
    PostgreSQL databases they cached for it are dropped afterwards."""
    folder = tmp_path_factory.mktemp("bench")
    yield folder
    if postgres_available() is None:
        drop_postgres_stores(folder)


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT + 60)
@pytest.mark.parametrize(("script", "extra"), _params())
def test_quick_run_exits_0(script: str, extra: list[str], bench_dir: Path) -> None:
    if _needs_postgres(script, extra):
        require_postgres()
    log = bench_dir / f"{script.removesuffix('.py')}.log"
    proc = start(run_all.command(script, extra), {"REGISTRY_BENCH_DIR": str(bench_dir)}, log)
    try:
        status = proc.wait(TIMEOUT)
    finally:
        proc.stop()
    assert status == 0, f"{script} {' '.join(extra)} exited {status}; output:\n{proc.output()}"


def test_every_benchmark_has_a_smoke_run_and_a_full_run() -> None:
    scripts = {p.name for p in run_all.HERE.glob("bench_*.py")}
    assert scripts == set(run_all.QUICK), "run_all.QUICK must list every benchmark"
    assert scripts == set(run_all.FULL), "run_all.FULL must list every benchmark"
