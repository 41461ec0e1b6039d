"""Presets that name a dataset since issue 13 (each task's own built-in), as they were before."""

from __future__ import annotations

import copy
from typing import Any

from registry.document import spec

#: The presets that took a ``data.dataset`` in issue 13 (before, the default builtin:pydoc).
DATASET_ADDED = {
    "lightweight-classification": "builtin:stdlib-docs",
    "complex-multimodal": "builtin:shapes",
    "image-text-matching": "builtin:shapes",
}


def hash_before_dataset(name: str, raw: dict[str, Any]) -> str:
    """The hash preset ``name`` (as ``raw``) had before issue 13 gave it its dataset.

    Such a document no longer validates with the old default (builtin:pydoc serves causal_lm
    only), so the normalised form is taken with today's dataset and the old one put back.
    """
    normalized = spec.normalize(raw)
    if name in DATASET_ADDED:
        assert normalized["data"]["dataset"] == DATASET_ADDED[name]
        normalized = copy.deepcopy(normalized)
        normalized["data"]["dataset"] = "builtin:pydoc"
    return spec.config_hash(normalized)
