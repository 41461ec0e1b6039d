"""``on_oom: remedy`` through the API on SQLite and PostgreSQL: a worker reports each run
failed with an out-of-memory error, and the service makes the guide's remedies version by
version, each queued as a new run, until none is left."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from registry.document import spec
from tests.support.worker import TINY

Auth = Callable[..., dict[str, str]]
API = "/api/v1"
OOM = {
    "kind": "out_of_memory",
    "type": "builtins.RuntimeError",
    "message": "DefaultCPUAllocator: not enough memory: you tried to allocate 1073741824 bytes.",
}


def _post(client: FlaskClient, path: str, headers: dict[str, str], body: Any) -> Any:
    answer = client.post(f"{API}{path}", json=body, headers=headers)
    assert answer.status_code in (200, 201), answer.get_json()
    return answer.get_json()


def _fail_next(client: FlaskClient, auth: Auth, error: dict[str, Any]) -> dict[str, Any]:
    """Claim the next run as a worker and report it failed with ``error``."""
    claim = _post(client, "/workers/claim", auth("worker"), {"worker": "w1"})
    body = {"lease": claim["lease"], "status": "failed", "error": error}
    return _post(client, f"/runs/{claim['run']['id']}/complete", auth("worker"), body)  # type: ignore[no-any-return]


def _version(client: FlaskClient, auth: Auth, number: int) -> dict[str, Any]:
    got = client.get(f"{API}/configs/tiny/versions/{number}", headers=auth("viewer"))
    assert got.status_code == 200, got.get_json()
    return got.get_json()  # type: ignore[no-any-return]


def test_the_chain_runs_version_by_version_until_exhausted(client: FlaskClient, auth: Auth) -> None:
    _post(client, "/configs", auth("submitter"), {"name": "tiny", "config": TINY})
    first = _post(
        client, "/runs", auth("submitter"), {"config": "tiny", "on_oom": "remedy", "priority": 3}
    )
    assert (first["on_oom"], first["remedied_by"]) == ("remedy", None)
    seen, failed = [], first
    for expected in ("gradient_checkpointing", "smaller_batch", "smaller_model_dim"):
        failed = _fail_next(client, auth, OOM)
        assert failed["error"]["remedy"] == expected and failed["remedied_by"] is not None
        new = client.get(f"{API}/runs/{failed['remedied_by']}", headers=auth("viewer")).get_json()
        assert (new["status"], new["on_oom"], new["priority"], new["queue"], new["kind"]) == (
            "queued",
            "remedy",
            3,
            "default",
            "train",
        )
        assert new["version"] == failed["version"] + 1
        version = _version(client, auth, new["version"])
        assert version["message"].startswith(f"remedy for run {failed['id']}: ")
        assert version["parent_version"] == failed["version"]
        seen.append(version)
    changes = [
        [
            c["field"]
            for c in spec.diff(_version(client, auth, v["version"] - 1)["config"], v["config"])
        ]
        for v in seen
    ]
    assert changes[0] == ["training.gradient_checkpointing"]
    assert sorted(changes[1]) == [
        "training.gradient_accumulation_steps",
        "training.per_device_train_batch_size",
    ]
    assert changes[2] == ["model.model_dim"] and seen[2]["config"]["model"]["model_dim"] == 48

    last = _fail_next(client, auth, OOM)
    assert last["remedied_by"] is None and last["error"]["remedy"] == "exhausted"
    assert "remedies are exhausted" in last["error"]["message"]
    assert last["error"]["message"].startswith(OOM["message"])
    assert (
        client.post(
            f"{API}/workers/claim", json={"worker": "w1"}, headers=auth("worker")
        ).status_code
        == 204
    )


def test_no_remedy_unless_asked_and_out_of_memory(client: FlaskClient, auth: Auth) -> None:
    _post(client, "/configs", auth("submitter"), {"name": "tiny", "config": TINY})
    plain = _post(client, "/runs", auth("submitter"), {"config": "tiny"})
    assert plain["on_oom"] == "fail"
    assert _fail_next(client, auth, OOM)["remedied_by"] is None
    _post(client, "/runs", auth("submitter"), {"config": "tiny", "on_oom": "remedy", "force": True})
    other = {"kind": "exception", "message": "ValueError: no"}
    assert _fail_next(client, auth, other)["remedied_by"] is None
    listed = client.get(f"{API}/configs/tiny", headers=auth("viewer")).get_json()
    assert len(listed["versions"]) == 1


def test_on_oom_other_than_fail_or_remedy_is_422_naming_it(client: FlaskClient, auth: Auth) -> None:
    _post(client, "/configs", auth("submitter"), {"name": "tiny", "config": TINY})
    for bad in ("retry", 1, None, ""):
        answer = client.post(
            f"{API}/runs", json={"config": "tiny", "on_oom": bad}, headers=auth("submitter")
        )
        assert answer.status_code == 422, answer.get_json()
        assert [e["field"] for e in answer.get_json()["errors"]] == ["on_oom"]


def test_a_reproduction_never_remedies(client: FlaskClient, auth: Auth) -> None:
    """It re-runs the same version to compare: a remedy would make it another config."""
    _post(client, "/configs", auth("submitter"), {"name": "tiny", "config": TINY})
    first = _post(client, "/runs", auth("submitter"), {"config": "tiny", "on_oom": "remedy"})
    again = _post(client, f"/runs/{first['id']}/reproduce", auth("submitter"), {})
    assert (again["reproduces"], again["on_oom"]) == (first["id"], "fail")
