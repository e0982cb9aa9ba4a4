"""The REST API: a real uvicorn server on a loopback port, a real HTTP client, a real vault.

Skills run in real child processes; their requests go through the real pipeline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import files_in, move, wait_for
from cryptography.hazmat.primitives.asymmetric import rsa

from daemon.agents.api.keys import ApiKeyStore
from daemon.agents.api.schemas import RunOut, SkillOut
from daemon.agents.api.server import ApiServer, check_host, is_loopback
from daemon.agents.queue.workers import Workers
from daemon.agents.skills.service import open_runs
from daemon.core.config import load_config
from daemon.core.errors import ConfigError, VaultdError
from daemon.core.settings import Settings
from daemon.core.vault import Vault
from daemon.service.app import App, open_app
from daemon.service.runner import Runner

SECRET = "test-secret-" + "k" * 60  # 72 bytes: long enough for HS512 too
AUDIENCE = "vaultd-test"
ISSUER = "https://issuer.test/"
DROP = object()
ENDPOINTS = {
    ("/api/v1/skills", "get"),
    ("/api/v1/skills/{key}", "get"),
    ("/api/v1/runs", "post"),
    ("/api/v1/runs/{run_id}", "get"),
    ("/api/v1/runs/{run_id}/execute", "post"),
    ("/api/v1/batches", "post"),
    ("/api/v1/batches/{batch_id}", "get"),
    ("/api/v1/kg/neighborhood", "get"),
    ("/api/v1/kg/search", "get"),
    ("/api/v1/kg/context", "get"),
}
POST = {"text": "Winter sale starts Monday", "platforms": ["facebook"]}
# Says it started, then holds its run until the test lets it go.
BLOCKING = """\
import pathlib
import time


def run(inputs, tools):
    folder = pathlib.Path(inputs["folder"])
    (folder / "started").write_text("yes")
    deadline = time.monotonic() + 15
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "released"
"""


def write_skill(root: Path, name: str, code: str, **manifest: Any) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    data = {"name": name, "description": f"test skill {name}", **manifest}
    (folder / "skill.json").write_text(json.dumps(data), encoding="utf-8")
    (folder / "execute.py").write_text(code, encoding="utf-8")


def open_test_app(root: Path) -> App:
    """A vault, its state and a config naming a skills folder and the JWT audience/issuer."""
    vault = root / "vault"
    Vault(vault).ensure_folders()
    skills = root / "skills"
    quick = "def run(inputs, tools):\n    return {'echo': inputs}\n"
    write_skill(skills, "quick", quick)
    write_skill(skills, "once-an-hour", quick, rate_limit=1)
    write_skill(skills, "blocking", BLOCKING, timeout_s=20)
    config = root / "config.toml"
    config.write_text(
        f'[api]\njwt_audience = "{AUDIENCE}"\njwt_issuer = "{ISSUER}"\n'
        f"[skills]\ndirs = [{json.dumps(str(skills))}]\n",
        encoding="utf-8",
    )
    return open_app(vault, config_path=config, state_dir=root / "state")


class Served:
    """A running API for one vault, with a client and an API key in the group marketing."""

    def __init__(self, root: Path) -> None:
        self.app = open_test_app(root)
        self.root = self.app.vault.root
        self.keys = ApiKeyStore(self.app.ledger)
        self.key = self.keys.create("agent", ["marketing"])
        self.server = ApiServer(
            self.app,
            open_runs(self.app),
            port=0,
            settings=Settings({"VAULTD_JWT_SECRET": SECRET}),
            access_log=False,
        )
        self.server.start()
        self.client = httpx.Client(base_url=self.server.url, timeout=30)

    def as_agent(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.app.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path)
    yield served
    served.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the tests that change nothing a later test looks at."""
    served = Served(tmp_path_factory.mktemp("api"))
    yield served
    served.close()


def token(secret: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "sub": "ci-bot",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + 300,
        "groups": ["finance"],
        **claims,
    }
    return jwt.encode({k: v for k, v in payload.items() if v is not DROP}, secret, algorithm)


def forged(header: dict[str, Any], signature: Callable[[bytes], bytes] = lambda _: b"") -> str:
    """Return a token with this header, valid claims, and the given signature of its input."""
    claims = jwt.decode(token(), options={"verify_signature": False})
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(signature(signing_input.encode()))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def process(app: App) -> None:
    Runner(app.pipeline, app.config).run_once()


def work(app: App) -> int:
    """Work the queue's due runs, as the workers of `vaultd run` do; return how many."""
    return Workers(open_runs(app), app.config.queue).drain()


# -- skills --------------------------------------------------------------------------------


def test_skills_are_listed_with_their_schema_intents_and_guardrails(shared: Served):
    answer = shared.client.get("/api/v1/skills", headers=shared.as_agent())

    assert answer.status_code == 200
    skills = {skill["key"]: skill for skill in answer.json()["skills"]}
    assert set(skills) == {
        "create-invoice",
        "generate-briefing",
        "post-social-media",
        "register-payment",
        "quick",
        "once-an-hour",
        "blocking",
    }
    post = skills["post-social-media"]
    assert post["parameters"]["required"] == ["text"]
    assert "announce" in post["intents"]
    assert post["guardrails"]["allowed_platforms"] == ["facebook", "instagram", "twitter"]
    assert post["approval_required"] is True
    assert post["tools"] == ["social.post"]
    assert (post["rate_limit"], post["timeout_s"], post["cooldown_seconds"]) == (30, 30, 0)
    assert skills["register-payment"]["required_groups"] == ["finance"]
    assert skills["quick"]["builtin"] is False


def test_one_skill_is_shown_by_key_and_an_unknown_one_is_404(shared: Served):
    answer = shared.client.get("/api/v1/skills/create-invoice", headers=shared.as_agent())
    assert answer.status_code == 200
    assert answer.json()["key"] == "create-invoice"
    assert answer.json()["guardrails"]["max_amount"] == "10000"

    missing = shared.client.get("/api/v1/skills/nope", headers=shared.as_agent())
    assert missing.status_code == 404
    assert "no skill named 'nope'" in missing.json()["error"]


def test_skills_carry_input_schema_intents_and_guardrails_and_the_old_parameters(
    shared: Served,
):
    listed = shared.client.get("/api/v1/skills", headers=shared.as_agent()).json()["skills"]
    one = shared.client.get("/api/v1/skills/post-social-media", headers=shared.as_agent()).json()

    assert [skill for skill in listed if skill["key"] == "post-social-media"] == [one]
    for skill in [*listed, one]:
        assert {"input_schema", "intents", "guardrails"} <= set(skill), skill["key"]
        assert set(skill) == set(SkillOut.model_fields), skill["key"]
        assert skill["input_schema"]["type"] == "object"
        assert skill["parameters"] == skill["input_schema"]  # the old name, for one release
    assert one["input_schema"]["required"] == ["text"]
    assert one["input_schema"]["properties"]["platforms"]["minItems"] == 1


# -- runs ----------------------------------------------------------------------------------


def test_a_post_run_waits_for_approval_then_succeeds_once_approved_and_done(served: Served):
    root = served.root
    created = served.client.post(
        "/api/v1/runs",
        json={"skill_key": "post-social-media", "inputs": POST, "execute": True},
        headers=served.as_agent(),
    )

    assert created.status_code == 202, created.text
    run = created.json()
    assert run["state"] == "queued"
    assert run["queue"]["channel"] == "default"
    assert run["requested_by"] == "apikey:agent"
    assert created.headers["Location"] == f"/api/v1/runs/{run['id']}"
    assert files_in(root, "Needs_Action") == []  # nothing ran inside the request

    assert work(served.app) == 1
    run = served.client.get(created.headers["Location"], headers=served.as_agent()).json()
    assert run["state"] == "awaiting_approval"
    [name] = files_in(root, "Needs_Action")
    assert run["trace"][0]["task_file"] == f"Needs_Action/{name}"

    process(served.app)
    assert files_in(root, "Pending_Approval") == [name]
    waiting = served.client.get(created.headers["Location"], headers=served.as_agent())
    assert waiting.json()["state"] == "awaiting_approval"

    move(root, root / "Pending_Approval" / name, "Approved")
    process(served.app)

    finished = served.client.get(f"/api/v1/runs/{run['id']}", headers=served.as_agent())
    assert finished.status_code == 200
    body = finished.json()
    assert body["state"] == "succeeded"
    [step] = body["trace"]
    assert (step["tool"], step["state"]) == ("social.post", "done")
    assert step["output"]["task_file"] == f"Done/{name}"
    assert step["inputs"] == POST


def test_a_draft_run_is_executed_later_and_a_succeeded_run_cannot_run_again(shared: Served):
    draft = shared.client.post(
        "/api/v1/runs",
        json={"skill_key": "quick", "inputs": {"n": 1}},
        headers=shared.as_agent(),
    )
    assert draft.status_code == 201
    assert draft.json()["state"] == "draft"
    run_id = draft.json()["id"]

    executed = shared.client.post(f"/api/v1/runs/{run_id}/execute", headers=shared.as_agent())
    assert executed.status_code == 200, executed.text
    assert executed.json()["state"] == "succeeded"
    assert executed.json()["output"] == {"echo": {"n": 1}}

    again = shared.client.post(f"/api/v1/runs/{run_id}/execute", headers=shared.as_agent())
    assert again.status_code == 409
    assert "only a draft or failed run runs" in again.json()["error"]


def test_every_run_answer_carries_run_id_state_output_and_trace_and_the_old_id(
    shared: Served,
):
    created = shared.client.post(
        "/api/v1/runs", json={"skill_key": "quick", "inputs": {"n": 2}}, headers=shared.as_agent()
    )
    run_id = created.json()["run_id"]
    executed = shared.client.post(f"/api/v1/runs/{run_id}/execute", headers=shared.as_agent())
    read = shared.client.get(f"/api/v1/runs/{run_id}", headers=shared.as_agent())

    assert created.headers["Location"] == f"/api/v1/runs/{run_id}"
    for answer, state in ((created, "draft"), (executed, "succeeded"), (read, "succeeded")):
        assert answer.status_code in (200, 201), answer.text
        body = answer.json()
        assert (body["run_id"], body["id"]) == (run_id, run_id)  # the old name, for one release
        assert body["state"] == state
        assert set(body) == set(RunOut.model_fields)  # output and trace among them
    assert executed.json()["output"] == read.json()["output"] == {"echo": {"n": 2}}
    assert read.json()["trace"] == executed.json()["trace"] == []  # quick calls no tool


def test_inputs_that_break_the_skills_schema_are_422_naming_each_field(shared: Served):
    answer = shared.client.post(
        "/api/v1/runs",
        json={"skill_key": "post-social-media", "inputs": {"platforms": ["myspace"]}},
        headers=shared.as_agent(),
    )
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert any(p["field"] == "(inputs)" and "'text'" in p["message"] for p in problems)
    assert any(problem["field"] == "platforms/0" for problem in problems)
    assert "(inputs): " in answer.json()["error"]
    assert files_in(shared.root, "Needs_Action") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": {}}, "body/skill_key"),
        ({"skill_key": "quick", "inputs": [1, 2]}, "body/inputs"),
        ({"skill_key": "quick", "execute": "maybe"}, "body/execute"),
        ({"skill_key": "quick", "approve": True}, "body/approve"),
    ],
)
def test_a_malformed_request_body_is_422_naming_the_field(
    shared: Served, body: dict[str, Any], field: str
):
    answer = shared.client.post("/api/v1/runs", json=body, headers=shared.as_agent())
    assert answer.status_code == 422
    assert field in [problem["field"] for problem in answer.json()["problems"]]
    assert answer.json()["error"].startswith("request invalid: ")


def test_unknown_skill_and_unknown_run_are_404(shared: Served):
    headers = shared.as_agent()
    created = shared.client.post("/api/v1/runs", json={"skill_key": "nope"}, headers=headers)
    assert created.status_code == 404
    assert "no skill named 'nope'" in created.json()["error"]
    for answer in (
        shared.client.get("/api/v1/runs/run-missing", headers=headers),
        shared.client.post("/api/v1/runs/run-missing/execute", headers=headers),
    ):
        assert answer.status_code == 404
        assert answer.json() == {"error": "no run 'run-missing'"}
    unknown_path = shared.client.get("/api/v1/approve", headers=headers)
    assert unknown_path.status_code == 404
    assert "error" in unknown_path.json()


def test_a_skill_over_its_rate_limit_is_429_with_retry_after(served: Served):
    headers = served.as_agent()
    body = {"skill_key": "once-an-hour", "execute": True}
    first = served.client.post("/api/v1/runs", json=body, headers=headers)
    assert first.status_code == 202
    assert work(served.app) == 1
    assert served.client.get(first.headers["Location"], headers=headers).json()["state"] == (
        "succeeded"
    )

    second = served.client.post("/api/v1/runs", json=body, headers=headers)

    assert second.status_code == 429
    assert "rate_limit 1/hour" in second.json()["error"]
    assert 3500 <= int(second.headers["Retry-After"]) <= 3600
    assert second.json()["retry_at"]


def test_a_running_skill_does_not_block_other_requests(shared: Served, tmp_path: Path):
    body = {"skill_key": "blocking", "inputs": {"folder": str(tmp_path)}, "execute": True}
    created = shared.client.post("/api/v1/runs", json=body, headers=shared.as_agent())
    assert created.status_code == 202  # answered at once: the run waits for a worker
    worker = threading.Thread(target=work, args=(shared.app,))
    worker.start()
    try:
        wait_for((tmp_path / "started").exists)
        started = time.monotonic()
        listed = shared.client.get("/api/v1/skills", headers=shared.as_agent())
        assert listed.status_code == 200
        assert time.monotonic() - started < 2
        running = shared.client.get(created.headers["Location"], headers=shared.as_agent())
        assert running.json()["state"] == "running"
        assert running.json()["queue"]["lease_owner"]
    finally:
        (tmp_path / "release").write_text("go")
        worker.join(20)
    done = shared.client.get(created.headers["Location"], headers=shared.as_agent()).json()
    assert (done["state"], done["output"]) == ("succeeded", "released")


def test_a_body_over_a_mebibyte_is_refused_before_it_is_read(shared: Served):
    big = {"skill_key": "quick", "inputs": {"blob": "x" * (1024 * 1024)}}
    answer = shared.client.post("/api/v1/runs", json=big)
    assert answer.status_code == 413
    assert "request body over 1048576 bytes" in answer.json()["error"]

    def chunks() -> Iterator[bytes]:
        yield b'{"skill_key": "quick"}'

    streamed = shared.client.post("/api/v1/runs", content=chunks(), headers=shared.as_agent())
    assert streamed.status_code == 411


# -- groups --------------------------------------------------------------------------------


def test_a_skill_requiring_a_group_the_caller_lacks_is_403(shared: Served):
    inputs = {"invoice": "INV/2026/00001", "amount": 10}
    body = {"skill_key": "register-payment", "inputs": inputs}

    by_key = shared.client.post("/api/v1/runs", json=body, headers=shared.as_agent())
    assert by_key.status_code == 403
    assert "requires one of the groups finance" in by_key.json()["error"]
    no_groups = shared.client.post("/api/v1/runs", json=body, headers=bearer(token(groups=DROP)))
    assert no_groups.status_code == 403

    by_token = shared.client.post("/api/v1/runs", json=body, headers=bearer(token()))
    assert by_token.status_code == 201, by_token.text
    assert by_token.json()["requested_by"] == "jwt:ci-bot"


def test_a_key_with_the_group_may_run_the_skill(shared: Served):
    finance = shared.keys.create("bookkeeper", ["finance"])
    body = {"skill_key": "register-payment", "inputs": {"invoice": "INV/1", "amount": 5}}
    answer = shared.client.post("/api/v1/runs", json=body, headers={"X-API-Key": finance})
    assert answer.status_code == 201
    assert answer.json()["requested_by"] == "apikey:bookkeeper"


# -- authentication ------------------------------------------------------------------------


def _revoked_key(served: Served) -> str:
    key = served.keys.create("leaver", [])
    served.keys.revoke("leaver")
    return key


def _rsa_token() -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return token(secret=private, algorithm="RS256")


def _hmac256(data: bytes) -> bytes:
    return hmac.new(SECRET.encode(), data, hashlib.sha256).digest()


AUTH_FAILURES: dict[str, tuple[Callable[[Served], dict[str, str]], str]] = {
    "no credentials": (lambda s: {}, "missing credentials"),
    "wrong key": (lambda s: bearer("vd_" + "x" * 43), "unknown API key"),
    "wrong key in X-API-Key": (lambda s: {"X-API-Key": "vd_nope"}, "unknown API key"),
    "revoked key": (lambda s: bearer(_revoked_key(s)), "API key 'leaver' was revoked at"),
    "basic auth": (lambda s: {"Authorization": "Basic YTpi"}, "unsupported Authorization"),
    "empty bearer": (lambda s: {"Authorization": "Bearer"}, "empty Bearer credential"),
    "garbage bearer": (lambda s: bearer("hello"), "neither an API key"),
    "two credentials": (
        lambda s: {**s.as_agent(), "X-API-Key": s.key},
        "send one credential",
    ),
    "alg none": (lambda s: bearer(forged({"alg": "none", "typ": "JWT"})), "'none'"),
    "alg None spelled otherwise": (lambda s: bearer(forged({"alg": "NONE"})), "'NONE'"),
    "HS384 when HS256 is pinned": (
        lambda s: bearer(token(algorithm="HS384")),
        "'HS384' is not accepted; this server accepts HS256 only",
    ),
    "HS512 when HS256 is pinned": (lambda s: bearer(token(algorithm="HS512")), "'HS512'"),
    "RS256 signed with an RSA key": (lambda s: bearer(_rsa_token()), "'RS256'"),
    "RS256 header over an HMAC signature": (
        lambda s: bearer(forged({"alg": "RS256", "typ": "JWT"}, _hmac256)),
        "'RS256'",
    ),
    "no alg in the header": (lambda s: bearer(forged({"typ": "JWT"}, _hmac256)), "None"),
    "another secret": (
        lambda s: bearer(token(secret="another-secret-" + "z" * 40)),
        "signature does not verify",
    ),
    "expired": (lambda s: bearer(token(exp=int(time.time()) - 60)), "JWT expired"),
    "missing exp": (lambda s: bearer(token(exp=DROP)), "lacks the required 'exp' claim"),
    "missing sub": (lambda s: bearer(token(sub=DROP)), "lacks the required 'sub' claim"),
    "wrong audience": (lambda s: bearer(token(aud="someone-else")), "audience is wrong"),
    "missing audience": (lambda s: bearer(token(aud=DROP)), "'aud' claim"),
    "wrong issuer": (lambda s: bearer(token(iss="https://evil.test/")), "issuer is wrong"),
    "not yet valid": (lambda s: bearer(token(nbf=int(time.time()) + 600)), "not valid yet"),
    "groups not a list": (lambda s: bearer(token(groups="finance")), "list of strings"),
    "malformed token": (lambda s: bearer("eyJ.not-base64.x"), "malformed JWT"),
}


@pytest.mark.parametrize("case", list(AUTH_FAILURES))
def test_every_auth_failure_is_401_with_a_json_message(shared: Served, case: str):
    make_headers, message = AUTH_FAILURES[case]
    headers = make_headers(shared)

    for answer in (
        shared.client.get("/api/v1/skills", headers=headers),
        shared.client.post(
            "/api/v1/runs", json={"skill_key": "quick", "execute": True}, headers=headers
        ),
    ):
        assert answer.status_code == 401, answer.text
        assert message in answer.json()["error"]
        assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="vaultd"')
    assert files_in(shared.root, "Needs_Action") == []


def test_every_api_route_requires_credentials(shared: Served):
    for path, method in ENDPOINTS:
        url = path.replace("{key}", "quick").replace("{run_id}", "run-x")
        answer = shared.client.request(method, url, json={"skill_key": "quick"})
        assert answer.status_code == 401, (method, url)


def test_a_valid_token_names_its_subject_as_the_requester(shared: Served):
    answer = shared.client.post(
        "/api/v1/runs", json={"skill_key": "quick"}, headers=bearer(token(sub="planner"))
    )
    assert answer.status_code == 201
    assert answer.json()["requested_by"] == "jwt:planner"


def test_without_a_jwt_secret_only_api_keys_work(tmp_path: Path):
    app = open_test_app(tmp_path)
    key = ApiKeyStore(app.ledger).create("agent", [])
    server = ApiServer(app, open_runs(app), port=0, settings=Settings({}), access_log=False)
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            refused = client.get("/api/v1/skills", headers=bearer(token()))
            assert refused.status_code == 401
            assert "VAULTD_JWT_SECRET is not set" in refused.json()["error"]
            assert client.get("/api/v1/skills", headers=bearer(key)).status_code == 200
    finally:
        server.stop()
        app.close()


def test_a_jwt_secret_too_short_for_the_algorithm_is_refused_at_start(tmp_path: Path):
    app = open_test_app(tmp_path)
    try:
        with pytest.raises(ConfigError, match="shorter than 32 bytes"):
            ApiServer(app, open_runs(app), settings=Settings({"VAULTD_JWT_SECRET": "short1"}))
    finally:
        app.close()


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ('jwt_algorithm = "none"', "api.jwt_algorithm: "),
        ('jwt_algorithm = "RS256"', "api.jwt_algorithm"),
        ('jwt_secret_env = "JWT_HMAC"', "JWT_HMAC does not look secret"),
        ("port = 70000", "api.port"),
    ],
)
def test_the_api_table_refuses_what_would_weaken_it(tmp_path: Path, setting: str, problem: str):
    path = tmp_path / "config.toml"
    path.write_text(f"[api]\n{setting}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(path)


# -- keys ----------------------------------------------------------------------------------


def test_only_the_hash_of_a_key_is_stored(shared: Served):
    key = shared.keys.create("hash-check", ["ops"])
    assert key.startswith("vd_") and len(key) > 40
    rows = shared.app.ledger.rows("SELECT * FROM api_keys WHERE name = 'hash-check'")
    assert rows[0]["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    database = (shared.app.state_dir / "ledger.sqlite3").read_bytes()
    assert key.encode() not in database


def test_a_name_in_use_needs_a_revoke_before_it_is_given_again(shared: Served):
    old = shared.keys.create("rotating", [])
    with pytest.raises(VaultdError, match="exists; revoke it first"):
        shared.keys.create("rotating", [])
    shared.keys.revoke("rotating")
    new = shared.keys.create("rotating", [])
    assert shared.client.get("/api/v1/skills", headers=bearer(old)).status_code == 401
    assert shared.client.get("/api/v1/skills", headers=bearer(new)).status_code == 200


# -- the document and the server --------------------------------------------------------


def test_the_openapi_document_lists_exactly_the_seven_endpoints(shared: Served):
    document = shared.client.get("/openapi.json").json()

    listed = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert listed == ENDPOINTS
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"]["name"] == "X-API-Key"
    assert shared.client.get("/docs").status_code == 200


def test_the_openapi_document_shows_the_new_names_and_marks_the_old_ones_deprecated(
    shared: Served,
):
    schemas = shared.client.get("/openapi.json").json()["components"]["schemas"]
    skill, run = schemas["SkillOut"], schemas["RunOut"]

    assert {"input_schema", "intents", "guardrails"} <= set(skill["required"])
    assert {"run_id", "state", "trace"} <= set(run["required"])
    assert "output" in run["properties"]
    for schema, old, new in ((skill, "parameters", "input_schema"), (run, "id", "run_id")):
        assert "deprecated" not in schema["properties"][new]
        assert schema["properties"][old]["deprecated"] is True
        assert schema["properties"][old]["description"].startswith("Deprecated")
        assert f"`{new}`" in schema["properties"][old]["description"]
    create = schemas["CreateRun"]["properties"]["inputs"]["description"]
    assert "input_schema" in create and "parameters" not in create


def test_the_server_reports_its_health_and_stops(tmp_path: Path):
    app = open_test_app(tmp_path)
    server = ApiServer(app, open_runs(app), port=0, settings=Settings({}), access_log=False)
    try:
        assert not server.healthy()
        server.start()
        assert server.url.startswith("http://127.0.0.1:")
        assert server.healthy()
        port = server.port
        server.stop()
        assert not server.healthy()
        server.start()  # a supervisor restarts it on the same port
        assert (server.port, server.healthy()) == (port, True)
    finally:
        server.stop()
        app.close()


def test_a_busy_port_is_a_clear_error(shared: Served, tmp_path: Path):
    app = open_test_app(tmp_path)
    server = ApiServer(app, open_runs(app), port=shared.server.port, settings=Settings({}))
    try:
        with pytest.raises(VaultdError, match=f"cannot listen on 127.0.0.1:{shared.server.port}"):
            server.start()
    finally:
        app.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_allowed(host: str):
    assert is_loopback(host)
    check_host(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10"])  # noqa: S104
def test_other_hosts_need_allow_remote(host: str):
    with pytest.raises(ConfigError, match=r"refusing to listen on .*--allow-remote"):
        check_host(host, allow_remote=False)
    check_host(host, allow_remote=True)
