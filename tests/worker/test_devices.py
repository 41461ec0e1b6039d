"""Which GPUs a daemon owns: the --gpus / CUDA_VISIBLE_DEVICES parser and what it sets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import BIN
from worker import devices
from worker.devices import DeviceGroup, DeviceListError, parse_gpus

UUID = "GPU-8a5f0c3e-1b2d-4e6f-9a0b-1c2d3e4f5a6b"


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("0", ("0",)),
        ("0,1", ("0", "1")),
        (" 2 , 3 ", ("2", "3")),
        ("07", ("7",)),
        ("", ()),
        ("none", ()),
        ("CPU", ()),
        (UUID, (UUID,)),
        (f"MIG-{UUID[4:]},1", (f"MIG-{UUID[4:]}", "1")),
    ],
)
def test_gpu_lists_that_parse(text: str, ids: tuple[str, ...]) -> None:
    assert parse_gpus(text) == ids


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0,,1", "item 2 is empty"),
        ("0,", "item 2 is empty"),
        ("-1", "'-1' is not a GPU number"),
        ("cuda:0", "'cuda:0' is not a GPU number"),
        ("1.5", "'1.5' is not a GPU number"),
        ("0 1", "'0 1' is not a GPU number"),
        ("\uff12", "'\uff12' is not a GPU number"),  # a full-width digit is not one
        ("1,01", "GPU 1 is named twice"),
        (",".join(str(i) for i in range(1025)), "1025 GPUs; at most 1024"),
    ],
)
def test_bad_gpu_lists_are_refused_naming_the_source(text: str, says: str) -> None:
    with pytest.raises(DeviceListError) as info:
        parse_gpus(text, "CUDA_VISIBLE_DEVICES")
    assert says in str(info.value)
    assert str(info.value).startswith("CUDA_VISIBLE_DEVICES")


def test_gpus_wins_over_cuda_visible_devices_which_wins_over_nothing() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "4,5"}
    assert devices.select("2,3", env) == DeviceGroup(("2", "3"), "--gpus")
    assert devices.select(None, env) == DeviceGroup(("4", "5"), "CUDA_VISIBLE_DEVICES")
    assert devices.select(None, {}).ids is None
    assert devices.select("none", env).cpu
    with pytest.raises(DeviceListError, match=r"^--gpus"):
        devices.select("a,b", env)


def test_the_environment_a_group_sets_before_cuda_starts() -> None:
    wanted = devices.cuda_environment(DeviceGroup(("2", "3"), "--gpus"), {})
    assert wanted == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "2,3",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }
    # The user's allocator and workspace settings stay; no group named: visibility stays.
    mine = {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128", "CUBLAS_WORKSPACE_CONFIG": ":16:8"}
    assert devices.cuda_environment(DeviceGroup(None, "x"), mine) == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID"
    }
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2,3", **mine}
    devices.apply(DeviceGroup((), "--gpus"), env)  # a CPU daemon hides every GPU
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"


def test_on_this_cpu_machine_a_named_gpu_is_refused_and_none_means_the_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert devices.choose_device(DeviceGroup((), "--gpus")) == "cpu"
    assert devices.choose_device(DeviceGroup(None, "every GPU torch sees")) == "cpu"
    with pytest.raises(DeviceListError) as info:
        devices.choose_device(DeviceGroup(("0", "1"), "--gpus"))
    assert str(info.value).startswith("--gpus names 2 GPU(s) (0,1) but torch sees 0")
    assert devices.claim_devices("cpu") is None
    assert devices.describe_device("cpu")["kind"] == "cpu"


def test_registry_worker_refuses_a_bad_list_with_exit_2_before_it_starts(tmp_path: Path) -> None:
    command = [str(BIN / "registry-worker"), "--once", "--gpus", "0,,1", "--server", "http://x"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=_env(tmp_path)
    )
    assert done.returncode == 2, done.stderr
    assert "--gpus '0,,1': item 2 is empty" in done.stderr


def _env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return keep | {"REGISTRY_TOKEN": "x", "REGISTRY_DATA_ROOT": str(tmp_path)}
