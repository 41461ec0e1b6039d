"""A real out of memory on the CPU, remedied: a real ``registry-worker`` whose address space is
capped (``prlimit --as``) trains a config too big for the cap; torch's allocator fails, the
worker reports ``out_of_memory``, and the service (a real ``registry serve``) makes the guide's
remedies version by version, each run by the same capped worker, until one fits or none is
left. SQLite and PostgreSQL.

The cap: an idle worker (torch, transformers and MLflow imported) measured 1.25 GB of address
space (VmSize; 0.54 GB resident) on this machine, so 4 GiB leaves about 2.7 GB for a run. The
config: the tiny-cpu preset at model_dim 4096 (443M parameters: 1.8 GB of weights, 6.6 GB
estimated peak) cannot fit; at the guide's 768 (16M parameters, 0.25 GB) it does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry.settings import Settings
from tests.support.procs import BIN, Server, start, start_server, wait_for

pytestmark = pytest.mark.slow

CAP = 4 * 2**30  #: the worker's address space (RLIMIT_AS), bytes
TOO_BIG = {"model_dim": 4096}
CHAIN_TIMEOUT = 600


def _capped_worker(server: Server, settings: Settings, token: str, tmp: Path) -> None:
    env = {
        "REGISTRY_URL": server.url,
        "REGISTRY_TOKEN": token,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
        "HF_HUB_OFFLINE": "1",
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MB of address space per thread's arena
    }
    argv = [str(BIN / "registry-worker"), "--name", "capped", "--poll-max", "1"]
    argv += ["--state-dir", str(tmp / "state")]
    start(["prlimit", f"--as={CAP}", "--", *argv], env, tmp / "logs" / "worker.log")


def _chain(server: Server, token: str, first: int) -> list[dict[str, Any]] | None:
    """The runs from ``first`` along ``remedied_by`` once the last one finished, else None."""
    runs = [server.get(f"/runs/{first}", token).json()]
    while runs[-1]["remedied_by"] is not None:
        runs.append(server.get(f"/runs/{runs[-1]['remedied_by']}", token).json())
    return runs if runs[-1]["status"] in ("succeeded", "failed", "cancelled") else None


def test_a_real_cpu_out_of_memory_gets_the_guides_remedies(
    settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    if settings.database_url.startswith("sqlite"):
        # Four 443M-parameter builds take minutes; the chain's database side (both backends)
        # is tests/http/test_oom_remedies.py's, so the real out of memory runs once.
        pytest.skip("the real out of memory runs once, on PostgreSQL")
    env = {
        "DATABASE_URL": settings.database_url,
        "REGISTRY_LEASE_SECONDS": "60",
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }
    server = start_server(env, tmp_path / "logs" / "server.log")
    admin = tokens["admin"]
    doc = server.get("/presets/tiny-cpu", admin).json()
    doc["model"].update(TOO_BIG)
    doc["training"].update(
        {"num_training_steps": 2, "eval_every_steps": 2, "per_device_train_batch_size": 2}
    )
    doc["data"]["seq_len"] = 32
    assert server.post("/configs", admin, {"name": "big", "config": doc}).status_code == 201
    queued = server.post("/runs", admin, {"config": "big", "on_oom": "remedy"})
    assert queued.status_code == 201, queued.text
    _capped_worker(server, settings, tokens["worker"], tmp_path)

    runs = wait_for(
        lambda: _chain(server, admin, queued.json()["id"]), CHAIN_TIMEOUT, "the remedy chain"
    )
    messages = [server.get(f"/configs/big/versions/{r['version']}", admin).json() for r in runs]
    for run, version in zip(runs, messages, strict=True):
        error = run["error"] or {}
        print(
            run["id"], f"v{run['version']}", run["status"], error.get("kind"), error.get("remedy")
        )
        print("   ", version["message"], "|", error.get("message", "")[:160])
    first = runs[0]
    assert (first["status"], first["error"]["kind"]) == ("failed", "out_of_memory"), first
    assert "allocate memory" in first["error"]["message"]
    assert first["remedied_by"] == runs[1]["id"]
    assert messages[1]["message"].startswith(
        f"remedy for run {first['id']}: training.gradient_checkpointing false -> true"
    )
    assert messages[1]["config"]["training"]["gradient_checkpointing"] is True
    assert [r["on_oom"] for r in runs] == ["remedy"] * len(runs)
    # The guide's order to its end: 4096 fits with none but the smaller model_dim (768).
    assert [r["error"]["remedy"] for r in runs[:-1]] == [
        "gradient_checkpointing",
        "smaller_batch",
        "smaller_model_dim",
    ]
    assert runs[-1]["status"] == "succeeded", runs[-1]
    assert messages[-1]["config"]["model"]["model_dim"] == 768


def test_torch_cpu_allocation_failure_is_out_of_memory() -> None:
    """The allocator's own error under a capped address space, classified by the worker."""
    code = (
        "import torch\n"
        "from worker.failures import classify\n"
        "try:\n"
        "    torch.zeros(2**31)\n"
        "except RuntimeError as exc:\n"
        "    print(classify(exc), exc)\n"
    )
    out = subprocess.run(
        ["prlimit", f"--as={2 * 2**30}", "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.startswith("out_of_memory "), out
    assert "DefaultCPUAllocator" in out
