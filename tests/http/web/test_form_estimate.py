"""The config form's estimate shows both memory figures per device and the active parameters."""

from __future__ import annotations

import re
from typing import Any

from registry.document import presets, spec
from registry.document.estimate import estimate
from tests.support.web import form_data


def test_the_form_shows_data_parallel_and_fully_sharded_memory(post_form: Any) -> None:
    doc = presets.get_preset("tiny-cpu").document
    doc = spec.normalize({**doc, "resources": {**doc["resources"], "gpus": 4}})
    data = form_data(doc) | {"name": "sharded", "action": "check"}
    answer = post_form("/configs/-/new", "/configs/-/new", data)
    page = answer.get_data(as_text=True)
    shown = dict(re.findall(r'<dd data-key="([a-z_]+)">([^<]*)<', page))
    e = estimate(doc)
    assert shown["peak_memory_gb"] == f"{e['peak_memory_gb']:g} GiB"
    assert shown["peak_memory_gb_fully_sharded"] == f"{e['peak_memory_gb_fully_sharded']:g} GiB"
    assert e["peak_memory_gb_fully_sharded"] < e["peak_memory_gb"]
    assert shown["active_parameters"] == f"{e['active_parameters']:,}"


def test_the_form_shows_a_matching_models_visual_encoder(post_form: Any) -> None:
    doc = presets.get_preset("image-text-matching").document
    data = form_data(doc) | {"name": "matching", "action": "check"}
    page = post_form("/configs/-/new", "/configs/-/new", data).get_data(as_text=True)
    shown = dict(re.findall(r'<dd data-key="([a-z_]+)">([^<]*)<', page))
    assert shown["visual_encoder_parameters"] == f"{estimate(doc)['visual_encoder_parameters']:,}"
    assert estimate(doc)["visual_encoder_parameters"] > 0
