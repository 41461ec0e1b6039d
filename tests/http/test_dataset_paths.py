"""`file:` datasets name files inside the worker's data root only: the service refuses the
paths that could leave it (absolute, `~`, `..`, NUL) as an error on `data.dataset`."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from registry.document import spec

API = "/api/v1"

ESCAPES = [
    "file:/proc/self/environ",
    "file:/etc/passwd",
    "file://etc/passwd",
    "file:~/.ssh/id_rsa",
    "file:../secrets.txt",
    "file:corpora/../../../etc/shadow",
    "file:corpora/..",
    "file:corpus\x00.txt",
    "file:\\\\server\\share\\x.txt",
    "file:C:\\Windows\\win.ini",
]
INSIDE = ["file:corpus.txt", "file:corpora/team/wiki.txt", "file:a..b.txt", "file:./x.txt"]


def _dataset_errors(dataset: str) -> list[str]:
    result = spec.validate({"data": {"dataset": dataset}})
    return [e.message for e in result.errors if e.field == "data.dataset"]


@pytest.mark.parametrize("dataset", ESCAPES)
def test_paths_that_could_leave_the_root_are_errors(dataset: str) -> None:
    messages = _dataset_errors(dataset)
    assert len(messages) == 1, messages
    assert "REGISTRY_DATA_ROOT" in messages[0]


@pytest.mark.parametrize("dataset", INSIDE)
def test_relative_paths_are_valid(dataset: str) -> None:
    assert _dataset_errors(dataset) == []


def test_the_api_refuses_them_naming_the_field(client: FlaskClient, auth) -> None:
    for dataset in ("file:/proc/self/environ", "file:../../home/x/.ssh/id_rsa"):
        body = {"name": "leak", "config": {"data": {"dataset": dataset}}}
        r = client.post(f"{API}/configs", json=body, headers=auth("submitter"))
        assert r.status_code == 422, r.json
        assert [e["field"] for e in r.json["errors"]] == ["data.dataset"]
    assert client.get(f"{API}/configs", headers=auth()).json["configs"] == []
    body = {"name": "ok", "config": {"data": {"dataset": "file:team/wiki.txt"}}}
    assert client.post(f"{API}/configs", json=body, headers=auth("submitter")).status_code == 201
