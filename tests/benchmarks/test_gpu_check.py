"""benchmarks/gpu_check.py (issue 12 item 9): without CUDA it says so and exits 0; its every
section runs on the CPU at toy sizes (--cpu-smoke), so the script is ready for a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the check would run")
def test_without_a_gpu_it_says_so_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no GPU reached" in done.stdout
    assert not out.exists()


@pytest.mark.slow  # about 100 s here, most of it compiling the toy model
@pytest.mark.timeout(600)
def test_every_section_runs_on_the_cpu_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["device"] for r in report["devices"]] == ["cpu", "cpu"]
    assert len(report["throughput"]) == 4 and all("error" not in r for r in report["throughput"])
    assert all(r["tokens_per_second"] > 0 for r in report["throughput"])
    assert len(report["memory"]) == 4 and all(r["estimate_gib"] > 0 for r in report["memory"])
    assert [r["identical"] for r in report["rerun"]] == [True] * 4  # strict determinism, CPU
    assert report["compile"]["speedup"] > 0
    assert "== rerun" in done.stdout
