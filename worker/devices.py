"""The GPUs a daemon owns (CONTRACT 5.7): ``--gpus 0,1``, else ``CUDA_VISIBLE_DEVICES``.

The daemon owns exactly the GPUs it is given. It sets ``CUDA_VISIBLE_DEVICES`` to them before
CUDA starts, so that it and every process it starts see them as ``cuda:0`` .. ``cuda:n-1``,
and ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so that the numbers are the ones ``nvidia-smi`` shows
(CUDA's own default order puts the fastest GPU first). One machine runs one daemon per GPU or
group of GPUs (``registry-worker@0.service``, ``registry-worker@2,3.service``).

Parsing is pure (:func:`parse_gpus`, :func:`select`, :func:`cuda_environment`); only
:func:`choose_device` and :func:`describe_device` ask torch.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

#: What a claim's ``devices`` may say (the API refuses more).
MAX_DEVICES = 1024
#: Words that mean "no GPU: train on the CPU".
CPU_WORDS = ("none", "cpu")
#: CUDA also takes GPU and MIG UUIDs, as nvidia-smi -L prints them.
_UUID = re.compile(r"(GPU|MIG)-[0-9A-Fa-f][0-9A-Fa-f/-]*")
_NUMBER = re.compile(r"[0-9]{1,4}")
#: Set before CUDA starts unless the user chose otherwise (see docs/worker.md, "Memory").
ALLOC_CONF = "expandable_segments:True"
#: cuBLAS is deterministic only with a fixed workspace, read when CUDA creates its handle.
CUBLAS_WORKSPACE = ":4096:8"


class DeviceListError(ValueError):
    """A GPU list that names no usable set of GPUs; the message names where it came from."""


@dataclass(frozen=True)
class DeviceGroup:
    """The GPUs named for a daemon: ``ids`` () for the CPU, None for every GPU torch sees."""

    ids: tuple[str, ...] | None
    source: str

    @property
    def cpu(self) -> bool:
        """True when the daemon was told to use no GPU."""
        return self.ids == ()


def parse_gpus(text: str, source: str = "--gpus") -> tuple[str, ...]:
    """``"0,1"`` -> ``("0", "1")``; ``""``, ``none``, ``cpu`` -> ``()`` (the CPU).

    Numbers are written without leading zeros; GPU-/MIG- UUIDs are kept as given. An empty
    item, anything else, a repeated GPU or more than MAX_DEVICES raise DeviceListError.
    """
    stripped = text.strip()
    if stripped.lower() in ("", *CPU_WORDS):
        return ()
    ids: list[str] = []
    for position, raw in enumerate(stripped.split(","), start=1):
        item = raw.strip()
        if not item:
            raise DeviceListError(
                f"{source} {text!r}: item {position} is empty; name GPUs by number "
                "separated by commas, e.g. 0,1"
            )
        if _NUMBER.fullmatch(item):
            item = str(int(item))
        elif not _UUID.fullmatch(item):
            raise DeviceListError(
                f"{source} {text!r}: {item!r} is not a GPU number (0, 1, ...) or a GPU-/MIG- "
                "UUID; use 'none' to train on the CPU"
            )
        if item in ids:
            raise DeviceListError(f"{source} {text!r}: GPU {item} is named twice")
        ids.append(item)
    if len(ids) > MAX_DEVICES:
        raise DeviceListError(f"{source}: {len(ids)} GPUs; at most {MAX_DEVICES}")
    return tuple(ids)


def select(gpus: str | None, environ: Mapping[str, str]) -> DeviceGroup:
    """``--gpus`` when given, else ``CUDA_VISIBLE_DEVICES`` when set, else every GPU."""
    if gpus is not None:
        return DeviceGroup(parse_gpus(gpus, "--gpus"), "--gpus")
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return DeviceGroup(parse_gpus(visible, "CUDA_VISIBLE_DEVICES"), "CUDA_VISIBLE_DEVICES")
    return DeviceGroup(None, "every GPU torch sees")


def cuda_environment(group: DeviceGroup, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to set before CUDA starts in this process (its children inherit them)."""
    wanted = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    if group.ids is not None:
        wanted["CUDA_VISIBLE_DEVICES"] = ",".join(group.ids)
    if "PYTORCH_CUDA_ALLOC_CONF" not in environ and "PYTORCH_ALLOC_CONF" not in environ:
        wanted["PYTORCH_CUDA_ALLOC_CONF"] = ALLOC_CONF
    if "CUBLAS_WORKSPACE_CONFIG" not in environ:
        wanted["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    return wanted


def cuda_started() -> bool:
    """True when this process has already started CUDA (then the variables come too late)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def apply(group: DeviceGroup, environ: MutableMapping[str, str] | None = None) -> None:
    """Set :func:`cuda_environment` in ``environ`` (os.environ); refused once CUDA started."""
    if cuda_started():
        raise DeviceListError(
            f"{group.source}: CUDA already started in this process, so the GPUs it sees can "
            "no longer be chosen; choose them before anything touches CUDA"
        )
    target = os.environ if environ is None else environ
    target.update(cuda_environment(group, target))


def choose_device(group: DeviceGroup) -> str:
    """``cuda:0`` (the first GPU of the group) or ``cpu``; after :func:`apply`.

    A group that names more GPUs than torch sees is refused rather than run elsewhere.
    """
    if group.cpu:
        return "cpu"
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if group.ids is None:
        return "cuda:0" if count else "cpu"
    if count < len(group.ids):
        raise DeviceListError(
            f"{group.source} names {len(group.ids)} GPU(s) ({','.join(group.ids)}) but torch "
            f"sees {count}{'' if count else ' (no CUDA build of torch, or no driver)'}; "
            "name GPUs this machine has, or 'none' for the CPU"
        )
    return "cuda:0"


def claim_devices(device: str) -> int | None:
    """What a claim says as ``devices``: the GPUs this daemon owns; None on the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.device_count())


def describe_device(device: str) -> dict[str, Any]:
    """What the worker announces about its devices when it registers."""
    import torch

    if device.startswith("cuda"):
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return {
            "kind": "cuda",
            "count": len(names),
            "names": names,
            "using": device,
            "visible": visible,
        }
    return {"kind": "cpu", "threads": torch.get_num_threads(), "using": device}
