"""Issue 5, item 3: the service does the work, then its answer is lost.

Two ways to lose it, in the loopback stand-ins: the connection drops right after the
commit, or the service stalls past the client's timeout (and then hangs up). Either way
vaultd must not send the request again by itself ("0 blind retries"): the action ends in
Failed/ as "outcome unknown", and a retry (the note moved back to Approved/) settles it by
a marker lookup — Done when found, Failed/ again when a lookup cannot tell (an Odoo invoice
left as a draft) — without a second request.

- Per connector, through the real Executor and a real ledger: a stall past a short client
  timeout (the connectors take it as a constructor argument; Odoo's is a module setting).
- End to end, through `vaultd run --live --once` and every service at once: dropped
  connections, and stalls past the timeout set with VAULTD_CALL_TIMEOUT (1 s here; with
  VAULTD_NIGHTLY=1 the connectors' own defaults, 15 s for the Graph API and 30 s for X and
  Odoo, are used instead).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import files_in, make_files, move
from e2e_support import (
    LiveTask,
    assert_each_file_once_with_its_body,
    audit_events,
    integrity,
    ledger_steps,
    live_tasks,
    meta,
    nightly,
    ok,
    remote_markers,
    remote_objects,
    seed_invoice,
    task_ids,
    vaultd,
    write_calls,
    write_env_file,
    write_live_config,
)
from standins.all import StandIns, running_all
from standins.x_api import CONSUMER_KEY
from tenacity import wait_none

from daemon.audit import AuditLog
from daemon.connectors import odoo_transport
from daemon.connectors.base import Connector
from daemon.connectors.facebook_live import FacebookConnector
from daemon.connectors.graph import GraphClient, RetryPolicy
from daemon.connectors.instagram_live import InstagramConnector
from daemon.connectors.odoo_live import connect as connect_odoo
from daemon.connectors.twitter_live import TwitterLive
from daemon.execution import Executor
from daemon.ledger import Ledger
from daemon.models import parse_action
from daemon.settings import Settings

pytestmark = pytest.mark.e2e

TIMEOUT = 1.0  # the clients' read timeout in the per-connector tests
STALL = 6.0  # how long the stand-in holds an answer back: well past TIMEOUT
FAST = RetryPolicy(attempts=3, initial=0.01, maximum=0.02, jitter=0.01)


@pytest.fixture
def standins() -> Iterator[StandIns]:
    with running_all() as running:
        running.graph.reads_to_finish = 0  # Instagram containers are ready at once
        running.graph.stall_seconds = STALL
        running.x.state.stall_seconds = STALL
        yield running


def task(kind: str, invoice: str = "-") -> LiveTask:
    """A task of this kind (see LIVE_KINDS) from the live workload."""
    return next(t for t in live_tasks(6, "lost", invoice) if t.kind == kind)


def connector(
    standins: StandIns, target: str, ledger: Ledger, protocol: str = "xmlrpc"
) -> Connector:
    """The real live connector for a target, with a client timeout of TIMEOUT seconds."""
    graph = standins.graph
    if target in ("facebook", "instagram"):
        client = GraphClient(
            token=graph.token,
            base_url=graph.url,
            version=graph.version,
            timeout=TIMEOUT,
            retry=FAST,
            service=target,
        )
        if target == "facebook":
            return FacebookConnector(client, graph.page_id, ledger)
        return InstagramConnector(client, graph.ig_id, ledger, poll_delays=(0.01,) * 3)
    if target == "twitter":
        env = standins.env()
        return TwitterLive(
            api_key=CONSUMER_KEY,
            api_secret=env["TWITTER_API_SECRET"],
            access_token=env["TWITTER_ACCESS_TOKEN"],
            access_secret=env["TWITTER_ACCESS_SECRET"],
            memory=ledger,
            api_url=standins.x.url,
            timeout=(TIMEOUT, TIMEOUT),
            read_wait=wait_none(),
        )
    settings = {**standins.env(), "ODOO_PROTOCOL": protocol}
    return connect_odoo(Settings(settings), ledger)


STALLS = {
    # case: (task kind, target, what stalls, ends found by lookup?)
    "facebook-post": ("facebook", "facebook", "graph", True),
    "instagram-publish": ("instagram", "instagram", "graph", True),
    "x-tweet": ("twitter", "twitter", "x", True),
    "odoo-post-xmlrpc": ("invoice", "odoo", "account.move.action_post", True),
    "odoo-post-json2": ("invoice", "odoo", "account.move.action_post", True),
    "odoo-create-xmlrpc": ("invoice", "odoo", "account.move.create", False),
    "odoo-payment-json2": (
        "payment",
        "odoo",
        "account.payment.register.action_create_payments",
        True,
    ),
}


@pytest.mark.parametrize("case", list(STALLS))
def test_a_stall_past_the_timeout_is_unknown_then_settled_by_lookup_without_a_second_call(
    case: str, standins: StandIns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    kind, target, stall, findable = STALLS[case]
    monkeypatch.setattr(odoo_transport, "CALL_TIMEOUT", TIMEOUT)  # Odoo's client timeout
    odoo = standins.odoo.odoo
    action = parse_action(task(kind, seed_invoice(odoo)).meta)
    before = write_calls(standins)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    live = connector(standins, target, ledger, "json2" if "json2" in case else "xmlrpc")
    executor = Executor(ledger, {target: live}, AuditLog(tmp_path / "Logs"), dry_run=False)
    if stall == "graph":
        standins.graph.stall_posts = 1
    elif stall == "x":
        standins.x.state.stall_after_accept = 1
    else:
        odoo.stall_after[stall] = STALL

    started = time.monotonic()
    first = executor.run("task-1", "hash", action)
    waited = time.monotonic() - started
    sent = write_calls(standins)
    sent.subtract(before)

    assert set(first.unknown) == {target}, first
    assert first.results == {}
    assert waited < STALL, "vaultd waited for the stand-in, not for its own timeout"
    assert remote_objects(standins, task(kind, "-"), target) == 1

    # The retry: a lookup settles it, and the service sees no second write.
    second = executor.run("task-1", "hash", action)
    third = executor.run("task-1", "hash", action)
    again = write_calls(standins)
    again.subtract(before)
    ledger.close()

    assert again == sent, "a write was sent again"
    assert remote_objects(standins, task(kind, "-"), target) == 1
    if findable:
        assert set(second.results) == {target}, second
        assert third.results == second.results
    else:  # an invoice left as a draft: a person decides, vaultd never creates another
        assert set(second.unknown) == set(third.unknown) == {target}
        assert "'draft', not posted" in second.unknown[target]
        assert [m["state"] for m in odoo.table("account.move")][-1] == "draft"
    lookups = [e["result"]["lookup"] for e in audit_events(tmp_path) if e["event"] == "reconciled"]
    assert lookups == (["found"] if findable else ["undetermined", "undetermined"])


# -- end to end: `vaultd run --live --once`, every service ---------------------------------

MODES = ["drop", "stall"]
# The daemon's call timeout, and how long the stand-ins keep a stalled answer back: past
# it. Nightly runs use the connectors' own timeouts (15 s, 30 s).
CALL_TIMEOUT = None if nightly() else 1.0
CLI_STALL = 45.0 if nightly() else 3.0


def lose_answers(standins: StandIns, mode: str) -> None:
    """Lose the answer to the first write of each kind: Facebook post, Instagram publish,
    tweet, invoice create, invoice post, payment."""
    graph, x, odoo = standins.graph, standins.x.state, standins.odoo.odoo
    keys = (
        "account.move.create",
        "account.move.action_post",
        "account.payment.register.action_create_payments",
    )
    if mode == "drop":
        graph.drop_posts, x.drop_after_accept = 2, 1
        odoo.drop_after_calls.update(keys)
    else:
        graph.stall_posts, graph.stall_seconds = 2, CLI_STALL
        x.stall_after_accept, x.stall_seconds = 1, CLI_STALL
        odoo.stall_after = dict.fromkeys(keys, CLI_STALL)


@pytest.mark.parametrize("mode", MODES)
def test_every_service_losing_its_answer_ends_done_by_lookup_or_failed_unknown_never_resent(
    mode: str, standins: StandIns, vault_root: Path, state_dir: Path, tmp_path: Path
):
    vault, state = vault_root, state_dir
    odoo = standins.odoo.odoo
    number = seed_invoice(odoo)
    workload = live_tasks(12, "lost", number)
    # A Facebook post, a tweet, an invoice, an Instagram post, a payment, and an invoice:
    # the first invoice processed loses the answer to its create (and is never posted),
    # the second the answer to its post.
    tasks = [workload[i] for i in (0, 1, 2, 3, 4, 8)]
    kinds = ["facebook", "twitter", "invoice", "instagram", "payment", "invoice"]
    assert [t.kind for t in tasks] == kinds
    make_files(vault, {f"Needs_Action/{t.name}": t.note() for t in tasks})
    env = standins.env()
    if mode == "stall" and CALL_TIMEOUT is not None:
        env["VAULTD_CALL_TIMEOUT"] = str(CALL_TIMEOUT)
    env_file = write_env_file(tmp_path / "live.env", env)
    config = write_live_config(tmp_path / "config.toml")
    args = ("run", "--vault", vault, "--state-dir", state, "--once", "--live")
    args += ("--env-file", env_file, "--config", config)
    before = write_calls(standins)
    lose_answers(standins, mode)

    # First run: every write is done remotely, every answer is lost: all in Failed/.
    started = time.monotonic()
    ok(vaultd(*args, timeout=600))
    took = time.monotonic() - started
    if mode == "stall" and CALL_TIMEOUT is not None:
        # Six answers kept back: waiting each one out would take 6 x CLI_STALL; the call
        # timeout of VAULTD_CALL_TIMEOUT gives up on each one well before.
        assert took < 6 * CLI_STALL, f"the call timeout was not used: {took:.1f} s"
    assert integrity(state) == "ok"
    located = assert_each_file_once_with_its_body(vault, tasks, folders=("Failed",))
    ids = task_ids(vault, located)
    for t in tasks:
        stamps = meta((vault / "Failed" / t.name).read_text(encoding="utf-8"))
        assert stamps["status"] == "outcome_unknown", (t.name, stamps)
        assert "outcome unknown, not retried" in stamps["error"]
    sent = write_calls(standins)
    sent.subtract(before)
    # One request per write, and no second one.
    assert +sent == Counter(
        {
            "facebook": 1,
            "instagram": 1,
            "twitter": 1,
            "odoo.invoice.create": 2,
            "odoo.invoice.post": 1,
            "odoo.payment": 1,
        }
    )
    objects = {t.name: remote_objects(standins, t, t.targets[0]) for t in tasks}
    assert objects == dict.fromkeys(objects, 1)
    for t in tasks:
        if t.kind in ("invoice", "payment"):
            assert remote_markers(standins, t) == [f"vaultd:{ids[t.name]}:odoo"]
    drafts = [m["ref"] for m in odoo.table("account.move") if m["state"] == "draft"]
    invoices = {f"vaultd:{ids[t.name]}:odoo": t.name for t in tasks if t.kind == "invoice"}
    assert len(drafts) == 1
    assert drafts[0] in invoices
    draft = invoices[drafts[0]]

    # A person retries them all: lookups settle each, and nothing is sent again.
    for t in tasks:
        move(vault, vault / "Failed" / t.name, "Approved")
    ok(vaultd(*args, timeout=120))
    ok(vaultd(*args, timeout=120))  # and once more: nothing changes
    assert integrity(state) == "ok"
    resent = write_calls(standins)
    resent.subtract(before)
    assert resent == sent, "a write was sent again"

    located = assert_each_file_once_with_its_body(vault, tasks, folders=("Done", "Failed"))
    assert files_in(vault, "Failed") == [draft]
    assert located == {t.name: "Failed" if t.name == draft else "Done" for t in tasks}
    failed = meta((vault / "Failed" / draft).read_text(encoding="utf-8"))
    assert failed["status"] == "outcome_unknown"
    assert "'draft', not posted" in failed["error"]
    for t in tasks:
        if t.name != draft:
            stamps = meta((vault / "Done" / t.name).read_text(encoding="utf-8"))
            assert stamps["status"] == "done"
            assert t.targets[0] in stamps["result"]
    assert {t.name: remote_objects(standins, t, t.targets[0]) for t in tasks} == objects

    lookups: dict[str, list[str]] = {}
    for event in audit_events(vault):
        if event["event"] == "reconciled":
            lookups.setdefault(event["result"]["marker"], []).append(event["result"]["lookup"])
    expected: dict[str, Any] = {
        f"vaultd:{ids[t.name]}:{t.targets[0]}": ["found"] for t in tasks if t.name != draft
    }
    # The draft is looked up at each look at its note (the retry); it stays undetermined.
    draft_marker = f"vaultd:{ids[draft]}:odoo"
    assert set(lookups.pop(draft_marker)) == {"undetermined"}
    assert lookups == expected
    steps = ledger_steps(state)
    for t in tasks:
        assert [s for _, s, _ in steps[ids[t.name]]] == [
            "unknown" if t.name == draft else "succeeded"
        ], (t.name, steps[ids[t.name]])
