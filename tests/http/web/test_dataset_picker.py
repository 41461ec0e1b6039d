"""The config form's dataset picker: a <datalist> of the built-ins that serve the task."""

from __future__ import annotations

import html
import re
from typing import Any

from flask.testing import FlaskClient

from registry.document import datasets


def _offered(page: str) -> list[str]:
    found = re.search(r'<datalist id="l-f-data-dataset">(.*?)</datalist>', page, re.S)
    assert found, "no dataset picker"
    options = re.findall(r'<option value="([^"]+)"[^>]*?( disabled)?></option>', found.group(1))
    assert [value for value, _ in options] == list(datasets.NAMES)  # app.js toggles the rest
    return [value for value, disabled in options if not disabled]


def test_the_picker_offers_the_builtins_of_the_chosen_task(web: FlaskClient) -> None:
    page = web.get("/configs/-/new").get_data(as_text=True)
    assert 'list="l-f-data-dataset"' in page
    assert _offered(page) == ["builtin:pydoc", "builtin:licenses"]  # the default causal_lm
    page = web.get("/configs/-/new?from=preset:lightweight-classification").get_data(as_text=True)
    assert _offered(page) == ["builtin:stdlib-docs"]
    assert 'value="builtin:stdlib-docs" list="l-f-data-dataset"' in page
    page = web.get("/configs/-/new?from=preset:image-text-matching").get_data(as_text=True)
    assert _offered(page) == ["builtin:shapes"]
    shapes = datasets.builtin("builtin:shapes")
    assert shapes is not None and html.escape(shapes.description, quote=True)[:40] in page


def test_a_checked_form_offers_the_task_it_names(web: FlaskClient, post_form: Any) -> None:
    form = {"task": "classification", "data.dataset": "builtin:pydoc"}
    answer = post_form("/configs/-/new", "/configs/-/new", {**form, "action": "check"})
    page = answer.get_data(as_text=True)
    assert _offered(page) == ["builtin:stdlib-docs"]
    assert "builtin:pydoc serves causal_lm, not task classification" in page
