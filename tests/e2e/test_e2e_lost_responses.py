"""Issues 5 (item 3) and 12 (item 3): the service does the work, then its answer is lost.

Two ways to lose it, in the loopback stand-ins: the connection drops right after the
commit, or the service stalls past the client's timeout (and then hangs up). Either way
vaultd never sends the request again blindly ("0 blind retries"): it looks the call up by
its marker straight away, and the lookup settles it — Done/ when found (an Odoo invoice
whose create lost its answer: its draft is found, checked and posted) — wherever the
service can be asked: Odoo, Facebook posts, Instagram posts, X tweets. What cannot be looked
up (Facebook and X DMs, Instagram replies) ends in Failed/ as "outcome unknown", and a retry
leaves it there without a second request. A lookup that cannot tell *yet* (Odoo down right
after the lost answer) leaves the note waiting in Approved/, the daemon working on other
files meanwhile, until a later lookup settles it.

- Per connector, through the real Executor and a real ledger: a stall past a short client
  timeout (the connectors take it as a constructor argument; Odoo's is a module setting).
- End to end, through `vaultd run --live --once` and every service at once: dropped
  connections, and stalls past the timeout set with VAULTD_CALL_TIMEOUT (1 s here; with
  VAULTD_NIGHTLY=1 the connectors' own defaults, 15 s for the Graph API and 30 s for X and
  Odoo, are used instead).
- End to end, through `vaultd run --live` (the daemon), with a short VAULTD_LOOKUP_SCHEDULE:
  the waiting note.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_files, move, wait_for
from e2e_support import (
    Daemon,
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

from daemon.connectors import odoo_transport
from daemon.connectors.base import Connector
from daemon.connectors.facebook_live import FacebookConnector
from daemon.connectors.graph import GraphClient, RetryPolicy
from daemon.connectors.instagram_live import InstagramConnector
from daemon.connectors.odoo_live import connect as connect_odoo
from daemon.connectors.twitter_live import TwitterLive
from daemon.core.audit import AuditLog
from daemon.core.ledger import Ledger
from daemon.core.models import parse_action
from daemon.core.settings import Settings
from daemon.lifecycle.execution import Executor
from daemon.lifecycle.lookups import LookupSchedule

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


# What cannot be looked up: a Page message, an Instagram comment reply, an X DM.
UNFINDABLE = {
    "fb-dm": {"platforms": ["facebook"], "kind": "dm", "recipient": "5550001"},
    "ig-reply": {
        "platforms": ["instagram"],
        "kind": "reply",
        "in_reply_to": "17900000000000001",
        "image_url": "https://example.com/lost/reply.jpg",
    },
    "x-dm": {"platforms": ["twitter"], "kind": "dm", "recipient": "1700000000000000099"},
}


def unfindable(kind: str) -> LiveTask:
    meta = {"type": "social_post", "text": f"lost {kind}: we will call you", **UNFINDABLE[kind]}
    return LiveTask(f"lost-{kind}.md", kind, meta, "Context.\n")


def writes(standins: StandIns) -> Counter[str]:
    """Every destructive request the stand-ins saw, DMs and replies included."""
    sent = write_calls(standins)
    sent["graph.publishing"] = standins.graph.publishing_posts()
    sent["x.dm"] = sum(
        1 for method, path in standins.x.state.requests if method == "POST" and "/dm_" in path
    )
    return sent


def objects(standins: StandIns, t: LiveTask) -> int:
    """How many remote objects one call of a task made."""
    graph = standins.graph
    if t.kind == "fb-dm":
        return len(graph.messages)
    if t.kind == "ig-reply":
        return sum(len(replies) for node, replies in graph.comments.items() if node.isdigit())
    if t.kind == "x-dm":
        return len(standins.x.state.dms)
    return remote_objects(standins, t, t.targets[0])


STALLS = {
    # case: (task kind, target, what stalls, found by the lookup made at once?)
    "facebook-post": ("facebook", "facebook", "graph", True),
    "instagram-publish": ("instagram", "instagram", "graph", True),
    "x-tweet": ("twitter", "twitter", "x", True),
    "odoo-post-xmlrpc": ("invoice", "odoo", "account.move.action_post", True),
    "odoo-post-json2": ("invoice", "odoo", "account.move.action_post", True),
    "odoo-create-xmlrpc": ("invoice", "odoo", "account.move.create", True),
    "odoo-create-json2": ("invoice", "odoo", "account.move.create", True),
    "odoo-payment-json2": (
        "payment",
        "odoo",
        "account.payment.register.action_create_payments",
        True,
    ),
    "facebook-dm": ("fb-dm", "facebook", "graph", False),
    "instagram-reply": ("ig-reply", "instagram", "graph", False),
    "x-dm": ("x-dm", "twitter", "x-dm", False),
}


@pytest.mark.parametrize("case", list(STALLS))
def test_a_stall_past_the_timeout_is_looked_up_at_once_and_never_sent_again(
    case: str, standins: StandIns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Found by the lookup made straight away, in the same run, wherever the service can be
    asked (an invoice whose create lost its answer: its draft is found and posted); a DM or
    an Instagram reply, which cannot be looked up, is unknown at once, for a person."""
    kind, target, stall, findable = STALLS[case]
    monkeypatch.setattr(odoo_transport, "CALL_TIMEOUT", TIMEOUT)  # Odoo's client timeout
    odoo = standins.odoo.odoo
    the_task = unfindable(kind) if kind in UNFINDABLE else task(kind, seed_invoice(odoo))
    action = parse_action(the_task.meta)
    before = writes(standins)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    live = connector(standins, target, ledger, "json2" if "json2" in case else "xmlrpc")
    short = LookupSchedule(first=0.05, longest=0.1, budget=1.0)
    audit = AuditLog(tmp_path / "Logs")
    executor = Executor(ledger, {target: live}, audit, dry_run=False, lookups=short)
    if stall == "graph":
        standins.graph.stall_posts = 1
    elif stall == "x":
        standins.x.state.stall_after_accept = 1
    elif stall == "x-dm":
        standins.x.state.stall_dms = 1
    else:
        odoo.stall_after[stall] = STALL

    started = time.monotonic()
    first = executor.run("task-1", "hash", action)
    waited = time.monotonic() - started
    sent = writes(standins)
    sent.subtract(before)

    assert waited < STALL, "vaultd waited for the stand-in, not for its own timeout"
    assert objects(standins, the_task) == 1
    if findable:
        assert set(first.results) == {target}, first
        assert first.unknown == first.deferred == {}
    else:
        assert set(first.unknown) == {target}, first
        assert "cannot be looked up" in first.unknown[target] or "no way" in first.unknown[target]
        assert first.results == first.deferred == {}
    if kind == "invoice":
        (move,) = odoo.table("account.move")[-1:]
        assert move["state"] == "posted"
        assert first.results["odoo"]["number"] == move["name"]

    # Later runs (a person's retry): nothing is sent again, whatever the lookup says.
    second = executor.run("task-1", "hash", action)
    again = writes(standins)
    again.subtract(before)
    ledger.close()

    assert again == sent, "a write was sent again"
    assert objects(standins, the_task) == 1
    if findable:
        assert second.results == first.results
    else:
        assert set(second.unknown) == {target}
    lookups = [e["result"]["lookup"] for e in audit_events(tmp_path) if e["event"] == "reconciled"]
    if not findable:
        assert lookups == ["undetermined", "undetermined"]
    elif case.startswith("odoo-create"):
        # The create's answer was lost: its draft is unfinished, posted by one more call.
        assert lookups == ["unfinished"]
        assert sent["odoo.invoice.create"] == sent["odoo.invoice.post"] == 1
    else:
        assert lookups == ["found"]


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


def lose_dm_answers(standins: StandIns, mode: str) -> None:
    """Lose the answer to the next Page message and the next X DM."""
    if mode == "drop":
        standins.graph.drop_posts, standins.x.state.drop_dms = 1, 1
    else:
        standins.graph.stall_posts, standins.x.state.stall_dms = 1, 1


def lookups_by_marker(vault: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for event in audit_events(vault):
        if event["event"] == "reconciled":
            found.setdefault(event["result"]["marker"], []).append(event["result"]["lookup"])
    return found


@pytest.mark.parametrize("mode", MODES)
def test_every_service_losing_its_answer_ends_done_by_lookup_and_dms_failed_never_resent(
    mode: str, standins: StandIns, vault_root: Path, state_dir: Path, tmp_path: Path
):
    vault, state = vault_root, state_dir
    odoo = standins.odoo.odoo
    number = seed_invoice(odoo)
    workload = live_tasks(12, "lost", number)
    # A Facebook post, a tweet, an invoice, an Instagram post, a payment, and an invoice:
    # the first invoice processed loses the answers to its create and to its post.
    tasks = [workload[i] for i in (0, 1, 2, 3, 4, 8)]
    kinds = ["facebook", "twitter", "invoice", "instagram", "payment", "invoice"]
    assert [t.kind for t in tasks] == kinds
    dms = [unfindable("fb-dm"), unfindable("x-dm")]  # a person approves these first
    make_files(vault, {f"Needs_Action/{t.name}": t.note() for t in [*tasks, *dms]})
    env = standins.env()
    if mode == "stall" and CALL_TIMEOUT is not None:
        env["VAULTD_CALL_TIMEOUT"] = str(CALL_TIMEOUT)
    env_file = write_env_file(tmp_path / "live.env", env)
    config = write_live_config(tmp_path / "config.toml")
    args = ("run", "--vault", vault, "--state-dir", state, "--once", "--live")
    args += ("--env-file", env_file, "--config", config)
    before = writes(standins)
    lose_answers(standins, mode)

    # First run: every write is done remotely, every answer is lost; the lookups made at
    # once find every one of them (the draft whose create lost its answer is posted).
    started = time.monotonic()
    ok(vaultd(*args, timeout=600))
    took = time.monotonic() - started
    if mode == "stall" and CALL_TIMEOUT is not None:
        # Six answers kept back: waiting each one out would take 6 x CLI_STALL; the call
        # timeout of VAULTD_CALL_TIMEOUT gives up on each one well before.
        assert took < 6 * CLI_STALL, f"the call timeout was not used: {took:.1f} s"
    assert integrity(state) == "ok"
    everything = [*tasks, *dms]
    located = assert_each_file_once_with_its_body(
        vault, everything, folders=("Done", "Pending_Approval")
    )
    assert located == {t.name: "Pending_Approval" if t in dms else "Done" for t in everything}
    ids = task_ids(vault, {t.name: located[t.name] for t in tasks})
    for t in tasks:
        stamps = meta((vault / "Done" / t.name).read_text(encoding="utf-8"))
        assert stamps["status"] == "done", (t.name, stamps)
        assert t.targets[0] in stamps["result"]
    sent = writes(standins)
    sent.subtract(before)
    # One request per write, and no second one.
    assert +sent == Counter(
        {
            "facebook": 1,
            "instagram": 1,
            "twitter": 1,
            "odoo.invoice.create": 2,
            "odoo.invoice.post": 2,
            "odoo.payment": 1,
            "graph.publishing": 2,
        }
    )
    assert {t.name: objects(standins, t) for t in tasks} == {t.name: 1 for t in tasks}
    for t in tasks:
        if t.kind in ("invoice", "payment"):
            assert remote_markers(standins, t) == [f"vaultd:{ids[t.name]}:odoo"]
    vaultds = [m for m in odoo.table("account.move") if str(m["ref"]).startswith("vaultd:")]
    assert [m["state"] for m in vaultds] == ["posted", "posted"]
    lookups = lookups_by_marker(vault)
    invoices = [f"vaultd:{ids[t.name]}:odoo" for t in tasks if t.kind == "invoice"]
    # The invoice that lost both answers: its draft found unfinished, then its post found.
    assert sorted(lookups.pop(m, []) for m in invoices) == [[], ["unfinished", "found"]]
    assert lookups == {
        f"vaultd:{ids[t.name]}:{t.targets[0]}": ["found"] for t in tasks if t.kind != "invoice"
    }
    steps = ledger_steps(state)
    for t in tasks:
        wanted = [["succeeded"]]
        if t.kind == "invoice":
            wanted.append(["unfinished", "succeeded"])
        assert [s for _, s, _ in steps[ids[t.name]]] in wanted, (t.name, steps[ids[t.name]])

    # The DMs wait for a person, who approves them; their answers are lost too.
    for t in dms:
        move(vault, vault / "Pending_Approval" / t.name, "Approved")
    lose_dm_answers(standins, mode)
    ok(vaultd(*args, timeout=120))
    dm_sent = writes(standins)
    dm_sent.subtract(before)
    assert dm_sent["graph.publishing"] == 3 and dm_sent["x.dm"] == 1
    located = assert_each_file_once_with_its_body(vault, everything, folders=("Done", "Failed"))
    assert located == {t.name: "Failed" if t in dms else "Done" for t in everything}
    for t in dms:
        stamps = meta((vault / "Failed" / t.name).read_text(encoding="utf-8"))
        assert stamps["status"] == "outcome_unknown", (t.name, stamps)
        assert "outcome unknown, not retried" in stamps["error"]
        assert objects(standins, t) == 1

    # A person retries the DMs: a lookup still cannot tell, and nothing is sent again.
    for t in dms:
        move(vault, vault / "Failed" / t.name, "Approved")
    ok(vaultd(*args, timeout=120))
    ok(vaultd(*args, timeout=120))  # and once more: nothing changes
    assert integrity(state) == "ok"
    resent = writes(standins)
    resent.subtract(before)
    assert resent == dm_sent, "a write was sent again"
    assert assert_each_file_once_with_its_body(vault, everything) == located
    dm_ids = task_ids(vault, dict.fromkeys((t.name for t in dms), "Failed"))
    lookups = lookups_by_marker(vault)
    for t in dms:
        assert lookups[f"vaultd:{dm_ids[t.name]}:{t.targets[0]}"] == ["undetermined"] * 2


# -- end to end: the daemon, a lookup that cannot tell yet ---------------------------------


def test_a_note_waits_while_odoo_cannot_be_asked_and_the_daemon_works_on_meanwhile(
    standins: StandIns, vault_root: Path, state_dir: Path, tmp_path: Path
):
    """Odoo takes the invoice's create, drops the answer and is down for a few seconds: the
    lookup made at once cannot tell, so the note waits in Approved/ (status waiting) while a
    post dropped meanwhile is done; when Odoo is back, a lookup finds the draft and it is
    posted, once."""
    vault, state = vault_root, state_dir
    odoo = standins.odoo.odoo
    (invoice,) = [t for t in live_tasks(6, "wait", "-") if t.kind == "invoice"]
    (post,) = [t for t in live_tasks(6, "meanwhile", "-") if t.kind == "facebook"]
    env = {**standins.env(), "VAULTD_LOOKUP_SCHEDULE": "0.5,1,30"}
    env_file = write_env_file(tmp_path / "live.env", env)
    config = write_live_config(tmp_path / "config.toml")
    odoo.outage_after["account.move.create"] = 4.0
    daemon = Daemon(vault, state, "--live", "--env-file", str(env_file), "--config", str(config))
    try:
        make_files(vault, {f"Needs_Action/{invoice.name}": invoice.note()})
        note = vault / "Approved" / invoice.name
        wait_for(
            lambda: (
                note.exists() and meta(note.read_text(encoding="utf-8")).get("status") == "waiting"
            ),
            timeout=30,
        )
        waiting = meta(note.read_text(encoding="utf-8"))
        assert "could not be asked" in waiting["note"], waiting
        make_files(vault, {f"Needs_Action/{post.name}": post.note()})
        wait_for((vault / "Done" / post.name).exists, timeout=30)
        assert note.exists(), "the invoice did not wait while Odoo was down"
        wait_for((vault / "Done" / invoice.name).exists, timeout=60)
    finally:
        exited = daemon.terminate()
    assert exited == 0, daemon.output()

    done = meta((vault / "Done" / invoice.name).read_text(encoding="utf-8"))
    (move_,) = [m for m in odoo.table("account.move") if str(m["ref"]).startswith("vaultd:")]
    assert move_["state"] == "posted"
    assert done["result"]["odoo"]["number"] == move_["name"]
    assert odoo.calls["account.move.create"] == 1
    assert odoo.calls["account.move.action_post"] == 1
    lookups = lookups_by_marker(vault)[f"vaultd:{done['id']}:odoo"]
    assert lookups[0] == "undetermined" and lookups[-1] == "unfinished", lookups
