"""``POST /runs`` with ``kind: train`` and ``from_run`` (fine-tuning), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.document.spec import config_hash
from registry.models import Config, ConfigVersion
from tests.support.worker import tiny_doc

Auth = Callable[..., dict[str, str]]


def post(client: FlaskClient, path: str, headers: dict[str, str], body: Any) -> Any:
    return client.post(f"/api/v1{path}", json=body, headers=headers)


def test_a_fine_tune_is_queued_from_a_succeeded_run_and_a_wrong_model_is_422(
    client: FlaskClient, auth: Auth, engine: Engine
) -> None:
    docs = {
        "parent": tiny_doc(),
        "child": tiny_doc(data={"dataset": "builtin:licenses"}),
        "wider": tiny_doc(model={"model_dim": 128}),
    }
    with transaction(make_session_factory(engine)) as s:
        for name, doc in docs.items():
            s.add(
                ConfigVersion(
                    config=Config(name=name), version=1, hash=config_hash(doc), document=doc
                )
            )
    parent = post(client, "/runs", auth("submitter"), {"config": "parent"}).get_json()
    early = post(client, "/runs", auth("submitter"), {"config": "child", "from_run": parent["id"]})
    assert early.status_code == 400 and early.get_json()["field"] == "from_run"
    claimed = post(client, "/workers/claim", auth("worker"), {"worker": "w1"}).get_json()
    report = {
        "lease": claimed["lease"],
        "status": "succeeded",
        "metrics": {},
        "mlflow_run_id": "m1",
    }
    assert post(client, f"/runs/{parent['id']}/complete", auth("worker"), report).status_code == 200

    wider = post(client, "/runs", auth("submitter"), {"config": "wider", "from_run": parent["id"]})
    assert wider.status_code == 422, wider.get_json()
    errors = wider.get_json()["errors"]
    assert {e["field"] for e in errors} == {"model"}
    assert "hidden_size is 128; from_run has 64" in [e["message"] for e in errors]

    body = {"config": "child", "kind": "train", "from_run": parent["id"]}
    fine_tune = post(client, "/runs", auth("submitter"), body)
    assert fine_tune.status_code == 201, fine_tune.get_json()
    assert (fine_tune.get_json()["kind"], fine_tune.get_json()["from_run"]) == (
        "train",
        parent["id"],
    )
    answer = post(client, "/workers/claim", auth("worker"), {"worker": "w1"}).get_json()
    assert answer["run"]["id"] == fine_tune.get_json()["id"]
    assert answer["from_run"]["mlflow_run_id"] == "m1"
    copy = post(client, f"/runs/{fine_tune.get_json()['id']}/reproduce", auth("submitter"), None)
    assert copy.status_code == 201 and copy.get_json()["from_run"] == parent["id"]
