"""A claim that says ``devices`` leaves runs that need more GPUs (CONTRACT 5.7), through the
HTTP API on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.models import Config, ConfigVersion
from registry.services.indexing import index_version

Auth = Callable[..., dict[str, str]]
API = "/api/v1"


@pytest.fixture
def by_gpus(engine: Engine) -> None:
    """Configs ``g1``, ``g2`` and ``g4`` asking for 1, 2 and 4 GPUs, indexed as stored."""
    with transaction(make_session_factory(engine)) as s:
        for gpus in (1, 2, 4):
            config = Config(name=f"g{gpus}")
            document = {"training": {"seed": gpus}, "resources": {"gpus": gpus}}
            version = ConfigVersion(
                config=config, version=1, hash=f"{gpus:0<64}", document=document
            )
            s.add_all([config, version])
            s.flush()
            index_version(s, version)


def queue_runs(client: FlaskClient, auth: Auth, *names: str) -> dict[str, int]:
    ids = {}
    for name in names:
        made = client.post(f"{API}/runs", json={"config": name}, headers=auth("submitter"))
        assert made.status_code == 201, made.get_json()
        ids[name] = made.get_json()["id"]
    return ids


def claim(client: FlaskClient, auth: Auth, **body: Any) -> Any:
    return client.post(f"{API}/workers/claim", json={"worker": "w", **body}, headers=auth("worker"))


def claimed_configs(client: FlaskClient, auth: Auth, **body: Any) -> list[str]:
    names = []
    while (answer := claim(client, auth, **body)).status_code == 200:
        names.append(answer.get_json()["run"]["config"])
    assert answer.status_code == 204
    return names


def test_a_gpu_worker_takes_only_runs_that_fit_its_gpus(
    client: FlaskClient, auth: Auth, by_gpus: None
) -> None:
    queue_runs(client, auth, "g4", "g1", "g2")  # g4 is the oldest: first in line
    assert claimed_configs(client, auth, devices=2) == ["g1", "g2"]
    assert claimed_configs(client, auth, devices=0) == []  # every run needs a GPU
    assert claimed_configs(client, auth, devices=3) == []
    assert claimed_configs(client, auth, devices=4) == ["g4"]


def test_a_claim_without_devices_takes_any_run(
    client: FlaskClient, auth: Auth, by_gpus: None
) -> None:
    queue_runs(client, auth, "g4", "g1")
    assert claimed_configs(client, auth, devices=1) == ["g1"]
    assert claimed_configs(client, auth) == ["g4"]  # a CPU worker


@pytest.mark.parametrize("devices", ["2", 2.5, -1, 1025, True, None, [1]])
def test_a_bad_devices_is_a_422_naming_it(
    client: FlaskClient, auth: Auth, by_gpus: None, devices: Any
) -> None:
    if devices is None:  # explicit null: the same as leaving it out
        assert claim(client, auth, devices=None).status_code == 204
        return
    answer = claim(client, auth, devices=devices)
    assert answer.status_code == 422, answer.get_json()
    assert [e["field"] for e in answer.get_json()["errors"]] == ["devices"]


def test_the_openapi_schema_of_claim_has_devices(client: FlaskClient, auth: Auth) -> None:
    document = client.get(f"{API}/openapi.json", headers=auth("viewer")).get_json()
    schema = document["components"]["schemas"]["ClaimRequest"]["properties"]["devices"]
    integer = next(s for s in schema["anyOf"] if s.get("type") == "integer")
    assert (integer["minimum"], integer["maximum"]) == (0, 1024)
    assert "resources.gpus" in schema["description"]
