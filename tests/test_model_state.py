"""A stateful model test of the whole lifecycle (design §3), with hypothesis.

A `RuleBasedStateMachine` plays the people, the agents, the remote services and the power
supply around one vault. Each step does one thing a person or an agent does — drop a task
file into Needs_Action/, edit a note, approve, reject, forge or replay a note into Approved/,
retry a failure, let two days pass — or arranges a fault: a service that refuses calls, a
service that commits a call and loses the answer, lookups that cannot tell, or a power cut at
a named point of the next run (daemon/core/failpoints.py). After each step the real daemon runs
in-process, as `vaultd run --once` does (`Runner.run_once` on an app from `open_app`), on a
real vault, a real SQLite ledger and the real pipeline. Only the network edge is replaced:
the dry-run connectors, wrapped by `Service` to inject faults and to record what reached the
service. A power cut raises `failpoints.Crashed` out of the run; the app is then dropped
without a clean shutdown and a fresh one opened on the same vault and state dir (a restart),
either at once or only at the next step (so people can act while the daemon is down).

After every step the model checks the promises of design §3:

- at most once: no marker (`vaultd:<task>:<target>`) reached a service twice;
- approval is bound to content: every call that reached a service is for a (task id,
  payload hash) that a person approved in Pending_Approval/ (the note they moved showed that
  very hash) or that the policy approved (a post dropped into Needs_Action/);
- a note in Done/ is the truth: each of its targets was called exactly once, for the
  payload the note holds;
- never lost: every file ever dropped, forged or copied is in exactly one folder, under its
  own name, with its body byte for byte and its user keys as written (an unreadable file
  byte for byte, with one rejection note beside it); nothing else appears;
- after a run that completed: nothing is left in Needs_Action/ or Approved/, each file is
  in a folder its history allows (a request that was approved as shown before its expiry
  ends in Done/ or Failed/, after it in Rejected/, a forgery never runs, a replay is
  refused into Rejected/ …), and the runner logged no unexpected error.

Each hypothesis example gets its own temporary vault (tmp_path is shared by all examples).
CI runs 20 examples of 30 steps; VAULTD_NIGHTLY=1 runs many more and longer sequences.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Clock, move, outbox, ram_dir
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from daemon.connectors.base import Connector, Health, Lookup, Undetermined
from daemon.core import failpoints, notes
from daemon.core.errors import ConnectorError, OutcomeUnknown, ValidationFailed
from daemon.core.models import Action, parse_action
from daemon.core.policy import Facts
from daemon.core.vault import APPROVED, DONE, FAILED, NEEDS_ACTION, PENDING, REJECTED, Vault
from daemon.lifecycle.lookups import LookupSchedule
from daemon.service.app import App, open_app
from daemon.service.runner import Runner

FOLDERS = (NEEDS_ACTION, PENDING, APPROVED, REJECTED, DONE, FAILED)
NIGHTLY = os.environ.get("VAULTD_NIGHTLY") == "1"
# Real files on a RAM disk where there is one: the same system calls, but fsync (which vaultd
# does on every write) costs nothing, so many more sequences fit in the time.
RAM_DIR = ram_dir()


# -- the network edge ---------------------------------------------------------------------


@dataclass
class Remote:
    """The services' side of the network. It outlives every restart of the daemon."""

    # marker -> the payload hash of each call that took effect at the service
    calls: dict[str, list[str]] = field(default_factory=dict)
    refuse: Counter[str] = field(default_factory=Counter)  # target -> calls to refuse
    lose: Counter[str] = field(default_factory=Counter)  # target -> answers to lose
    blind_lookups: int = 0  # lookups that can tell neither found nor absent


class Service:
    """A dry-run connector (the real one, writing the outbox) behind a faulty network."""

    def __init__(self, inner: Connector, remote: Remote) -> None:
        self.name = inner.name
        self._inner = inner
        self._remote = remote

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        return self._inner.describe(action, marker=marker)

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        if self._remote.refuse[self.name] > 0:
            self._remote.refuse[self.name] -= 1
            raise ConnectorError(f"{self.name} answered 503 Service Unavailable")
        result = self._inner.execute(action, marker=marker, dry_run=dry_run)
        self._remote.calls.setdefault(marker, []).append(action.payload_hash())
        if self._remote.lose[self.name] > 0:
            self._remote.lose[self.name] -= 1
            raise OutcomeUnknown(f"{self.name}: connection reset after sending")
        return result

    def lookup(self, marker: str) -> Lookup:
        if self._remote.blind_lookups > 0:
            self._remote.blind_lookups -= 1
            return Undetermined(f"{self.name}: lookup timed out")
        return self._inner.lookup(marker)

    def check(self) -> Health:
        return self._inner.check()

    def facts(self, action: Action) -> Facts:
        return self._inner.facts(action)


# -- what people and agents write ---------------------------------------------------------

TEXTS = ["Spring sale starts today", "We are hiring", "New blog post", "Office closed Friday"]
PLATFORMS = [["facebook"], ["twitter"], ["facebook", "twitter"]]
BODY_BITS = st.sampled_from(
    [
        "Context for the reviewer.\n",
        "---\n",
        "id: not-a-real-id\nstatus: approved\n",
        "  trailing spaces   \n",
        "\n\n",
        "\r\n",
        "Grüße — ✓ 数字\n",
        notes.BLOCK_END,
        "no newline at the end",
    ]
)
BODIES = st.lists(
    st.one_of(
        BODY_BITS,
        st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
        ),
    ),
    max_size=5,
).map("".join)


def post_meta(kind: str, platforms: list[str], text: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"type": "social_post", "platforms": platforms, "kind": kind}
    meta["text"] = text
    if kind == "reply":
        meta["in_reply_to"] = "12345678"  # an id of every platform (X: digits only)
    return meta


def invoice_meta(quantity: int) -> dict[str, Any]:
    line = {"product": "Consulting", "quantity": quantity, "price_unit": 50}
    return {"type": "odoo_invoice", "partner": "Acme Corp", "lines": [line]}


def payment_meta(cents: int) -> dict[str, Any]:
    return {"type": "odoo_payment", "invoice": "INV/2026/00042", "amount": cents / 100}


INVALID_METAS: list[dict[str, Any] | None] = [
    None,  # no frontmatter at all
    {"type": "social_post", "platforms": ["myspace"], "text": "Hello"},
    {"type": "social_post", "platforms": ["facebook"], "txt": "a typo"},
    {"type": "tweet", "text": "Hello"},
    {"type": "odoo_invoice", "partner": "Acme Corp"},
    {"type": "social_post", "platforms": ["facebook"], "kind": "reply", "text": "no parent"},
]
UNREADABLE = [
    b"---\ntype: social_post\ntext: [unclosed\n---\nbody\n",
    b"---\ntype: &a social_post\nkind: *a\n---\nbody\n",
    b"\xff\xfe not UTF-8 \x80\n",
    b"---\ntype: social_post\nno closing line\n",
]


def frontmatter(meta: dict[str, Any]) -> str:
    """The frontmatter as an agent writes it: a comment, then one key a line (block style).

    Not a flow mapping: see test_a_flow_mapping_frontmatter_stays_readable_after_stamping.
    """
    dumped = yaml.safe_dump(meta, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "# written by the model test\n" + dumped


def note_text(meta: dict[str, Any] | None, body: str) -> str:
    return body if meta is None else f"---\n{frontmatter(meta)}---\n{body}"


def payload_hash(meta: dict[str, Any] | None) -> str | None:
    if meta is None:
        return None
    try:
        return parse_action(meta).payload_hash()
    except ValidationFailed:
        return None


def targets_of(meta: dict[str, Any]) -> list[str]:
    return list(meta["platforms"]) if meta["type"] == "social_post" else ["odoo"]


def edited(meta: dict[str, Any], choice: int) -> tuple[dict[str, Any], str, str]:
    """Return the meta with its payload changed, and the (key, new value) line that does it."""
    new = yaml.safe_load(yaml.safe_dump(meta))  # a deep copy
    if meta["type"] == "social_post":
        new["text"] = TEXTS[choice % len(TEXTS)] + " (edited)"
        return new, "text", yaml.safe_dump(new["text"]).removesuffix("\n...\n").strip()
    if meta["type"] == "odoo_invoice":
        new["lines"][0]["quantity"] = choice % 40 + 1
        return new, "quantity", str(new["lines"][0]["quantity"])
    new["amount"] = (choice % 9000 + 1) / 100
    return new, "amount", str(new["amount"])


def set_line(text: str, key: str, value: str) -> str:
    """Change the first `key:` line of a note's frontmatter, as a person does in an editor."""
    end = text.index("\n---\n", 4)
    pattern = re.compile(rf"^(\s*(?:- )?){re.escape(key)}: .*$", re.M)
    match = pattern.search(text, 0, end)
    assert match is not None, f"no {key}: line in {text[:end]!r}"
    return text[: match.start()] + f"{match.group(1)}{key}: {value}" + text[match.end() :]


# -- the model ------------------------------------------------------------------------------


@dataclass
class Model:
    """What the model knows about one file it put into the vault."""

    name: str
    meta: dict[str, Any] | None  # the user's keys; None for no frontmatter or unreadable
    body: str
    raw: bytes | None = None  # an unreadable file: its exact bytes, never to change
    folder: str = NEEDS_ACTION  # where it was last seen
    allowed: frozenset[str] = frozenset()  # where the next completed run may leave it
    policy_hash: str | None = None  # a post the policy approves, on its first way through
    failed_hash: str | None = None  # the payload it had when it landed in Failed/

    @property
    def hash(self) -> str | None:
        return payload_hash(self.meta)


class RunnerErrors(logging.Handler):
    """Collects what the runner logs when processing a file raised an unexpected error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(self.format(record))


class VaultModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="vaultd-model-", dir=RAM_DIR))
        self.root = self.tmp / "vault"
        self.state_dir = self.tmp / "state"
        self.config = self.tmp / "config.toml"
        self.config.write_text("", encoding="utf-8")  # the defaults, whatever the machine has
        Vault(self.root).ensure_folders()
        self.root = Vault(self.root).root
        self.clock = Clock()
        self.remote = Remote()
        self.files: dict[str, Model] = {}
        self.counter = 0
        self.app: App | None = None
        self.crash: str | None = None  # the failpoint armed for the next run
        self.restart_at_once = True
        self.human_approved: set[tuple[str, str]] = set()  # (task id, payload hash)
        self.policy_approved: set[tuple[str, str]] = set()
        self.errors = RunnerErrors()
        logging.getLogger("daemon.service.runner").addHandler(self.errors)

    def teardown(self) -> None:
        failpoints.disarm()
        logging.getLogger("daemon.service.runner").removeHandler(self.errors)
        if self.app is not None:
            self.app.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- running the daemon ---------------------------------------------------------------

    def _open(self) -> App:
        app = open_app(self.root, config_path=self.config, state_dir=self.state_dir)
        app.pipeline.clock = self.clock
        # A lookup that cannot tell goes to a person at once: no note waits in Approved/.
        app.pipeline.executor.lookups = LookupSchedule(budget=0)
        for name, connector in list(app.pipeline.connectors.items()):
            app.pipeline.connectors[name] = Service(connector, self.remote)
        return app

    def _run_once(self) -> None:
        if self.app is None:
            self.app = self._open()  # the restart
        # Polling: a Runner per run must not take an inotify instance (a scarce resource).
        Runner(self.app.pipeline, self.app.config, polling=True).run_once()

    def _kill(self) -> None:
        """Drop the app as a dead process leaves it: the OS closes its database handle."""
        assert self.app is not None
        self.app.ledger.close()
        self.app = None

    def _settle(self) -> None:
        """Run the daemon once (with the armed crash, if any); check what it must keep."""
        completed = False
        if self.crash is None:
            self._run_once()
            completed = True
        else:
            failpoints.arm([self.crash])
            try:
                self._run_once()
                completed = True
            except failpoints.Crashed:
                self._kill()
            finally:
                failpoints.disarm()
                self.crash = None
            if not completed and self.restart_at_once:
                self._run_once()
                completed = True
        self._check(completed=completed)

    # -- helpers ----------------------------------------------------------------------------

    def _new_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}.md"

    def _path(self, model: Model) -> Path:
        return self.root / model.folder / model.name

    def _in(self, *folders: str) -> list[Model]:
        return sorted(
            (m for m in self.files.values() if m.folder in folders and m.raw is None),
            key=lambda m: m.name,
        )

    def _pick(self, pick: int, *folders: str) -> Model:
        candidates = self._in(*folders)
        return candidates[pick % len(candidates)]

    def _stamps(self, model: Model) -> dict[str, Any]:
        return notes.parse(self._path(model).read_bytes().decode("utf-8")).stamps

    def _add(self, model: Model, folder: str, content: bytes) -> None:
        model.folder = folder
        (self.root / folder / model.name).write_bytes(content)
        self.files[model.name] = model

    # -- agents drop task files -----------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self._settle()

    @rule(
        kind=st.sampled_from(["post", "post", "reply"]),
        platforms=st.sampled_from(PLATFORMS),
        text=st.sampled_from(TEXTS),
        body=BODIES,
    )
    def drop_post(self, kind: str, platforms: list[str], text: str, body: str) -> None:
        meta = post_meta(kind, platforms, text)
        model = Model(self._new_name("post"), meta, body)
        if kind == "post":
            model.policy_hash = model.hash  # approved by policy (unless it is a repeat)
            model.allowed = frozenset({DONE, FAILED, PENDING})
        else:
            model.allowed = frozenset({PENDING})
        self._add(model, NEEDS_ACTION, note_text(meta, body).encode())
        self._settle()

    @rule(invoice=st.booleans(), amount=st.integers(1, 3000), body=BODIES)
    def drop_odoo_task(self, invoice: bool, amount: int, body: str) -> None:
        # Dry-run cannot check partners or invoices in Odoo: every one asks a person.
        meta = invoice_meta(amount % 40 + 1) if invoice else payment_meta(amount * 7)
        model = Model(self._new_name("odoo"), meta, body, allowed=frozenset({PENDING}))
        self._add(model, NEEDS_ACTION, note_text(meta, body).encode())
        self._settle()

    @rule(meta=st.sampled_from(INVALID_METAS), body=BODIES)
    def drop_invalid(self, meta: dict[str, Any] | None, body: str) -> None:
        if meta is None:  # and not starting with ---, which would open a frontmatter
            body = "An agent forgot the frontmatter.\n" + body
        model = Model(self._new_name("invalid"), meta, body, allowed=frozenset({REJECTED}))
        self._add(model, NEEDS_ACTION, note_text(meta, body).encode())
        self._settle()

    @rule(content=st.sampled_from(UNREADABLE))
    def drop_unreadable(self, content: bytes) -> None:
        model = Model(self._new_name("unreadable"), None, "", raw=content)
        model.allowed = frozenset({REJECTED})
        self._add(model, NEEDS_ACTION, content)
        self._settle()

    # -- people edit notes ----------------------------------------------------------------

    def _edit_payload(self, model: Model, choice: int) -> None:
        assert model.meta is not None
        new_meta, key, value = edited(model.meta, choice)
        path = self._path(model)
        # Bytes, not read_text/write_text: those would turn a CRLF in the body into LF.
        path.write_bytes(set_line(path.read_bytes().decode("utf-8"), key, value).encode())
        changed = payload_hash(new_meta) != model.hash
        model.meta = new_meta
        if model.folder == NEEDS_ACTION:
            # Still a new task to vaultd (a crash left it here): decided afresh.
            is_post = new_meta["type"] == "social_post" and new_meta["kind"] == "post"
            model.policy_hash = model.hash if is_post else None
        elif model.folder == APPROVED and changed:
            model.allowed = frozenset({PENDING})  # changed after its approval: asked again

    def _edit_body(self, model: Model, body: str) -> None:
        path = self._path(model)
        text = path.read_bytes().decode("utf-8")
        assert text.endswith(model.body)
        path.write_bytes((text[: len(text) - len(model.body)] + body).encode())
        model.body = body

    @precondition(lambda self: self._in(PENDING, FAILED))
    @rule(pick=st.integers(0, 99), choice=st.integers(0, 999), body=st.none() | BODIES)
    def edit_settled_note(self, pick: int, choice: int, body: str | None) -> None:
        """Edit a pending request (vaultd re-renders it) or a failed note."""
        model = self._pick(pick, PENDING, FAILED)
        if model.hash is None or body is not None:
            self._edit_body(model, body or "edited\n")
        else:
            self._edit_payload(model, choice)
        self._settle()

    @precondition(lambda self: self.app is None and self._in(NEEDS_ACTION, APPROVED))
    @rule(pick=st.integers(0, 99), choice=st.integers(0, 999), body=st.none() | BODIES)
    def edit_while_the_daemon_is_down(self, pick: int, choice: int, body: str | None) -> None:
        """Edit a note a crash left in Needs_Action/ or Approved/, before the restart."""
        model = self._pick(pick, NEEDS_ACTION, APPROVED)
        if model.hash is None or body is not None:
            self._edit_body(model, body or "edited\n")
        else:
            self._edit_payload(model, choice)
        self._settle()

    # -- people decide ----------------------------------------------------------------------

    def _shown_and_approvable(self, model: Model) -> tuple[str, str] | None:
        """Return (task id, hash) if the note is a request showing the payload it holds."""
        stamps = self._stamps(model)
        shown = (stamps.get("approval") or {}).get("payload_hash")
        if stamps.get("status") == "pending_approval" and shown and shown == model.hash:
            return stamps["id"], shown
        return None

    def _expired(self, model: Model) -> bool:
        """Return whether the expiry a request shows has passed (the daemon was down since)."""
        expires_at = (self._stamps(model).get("approval") or {}).get("expires_at")
        return isinstance(expires_at, str) and datetime.fromisoformat(expires_at) <= self.clock.now

    def _approve(self, model: Model) -> None:
        """Move a request to Approved/, noting what the person saw and so approved.

        A request approved after the expiry it shows is approved too late: it expires.
        """
        approval = self._shown_and_approvable(model)
        if approval is not None and self._expired(model):
            model.allowed = frozenset({REJECTED})
        elif approval is not None:
            self.human_approved.add(approval)
            model.allowed = frozenset({DONE, FAILED})
        else:
            model.allowed = frozenset({PENDING, REJECTED})
        os.rename(self._path(model), self.root / APPROVED / model.name)  # noqa: PTH104
        model.folder = APPROVED

    @precondition(lambda self: self._in(PENDING))
    @rule(pick=st.integers(0, 99))
    def approve(self, pick: int) -> None:
        self._approve(self._pick(pick, PENDING))
        self._settle()

    @precondition(lambda self: self._in(PENDING))
    @rule(pick=st.integers(0, 99), choice=st.integers(0, 999), body=st.none() | BODIES)
    def edit_and_approve_at_once(self, pick: int, choice: int, body: str | None) -> None:
        """Change a request and move it to Approved/ before vaultd sees the change.

        A changed payload was never shown, so it is asked about again; a changed body only
        is no change to the action, and runs.
        """
        model = self._pick(pick, PENDING)
        if body is not None:
            self._edit_body(model, body)
        elif model.hash is not None:
            self._edit_payload(model, choice)
        self._approve(model)
        self._settle()

    @precondition(lambda self: self._in(PENDING))
    @rule(pick=st.integers(0, 99))
    def reject(self, pick: int) -> None:
        model = self._pick(pick, PENDING)
        os.rename(self._path(model), self.root / REJECTED / model.name)  # noqa: PTH104
        model.folder = REJECTED
        model.allowed = frozenset({REJECTED})
        self._settle()

    @precondition(lambda self: self._in(FAILED))
    @rule(pick=st.integers(0, 99))
    def retry_failed(self, pick: int) -> None:
        model = self._pick(pick, FAILED)
        if model.hash == model.failed_hash:
            model.allowed = frozenset({DONE, FAILED})
        else:
            model.allowed = frozenset({PENDING})
        os.rename(self._path(model), self.root / APPROVED / model.name)  # noqa: PTH104
        model.folder = APPROVED
        self._settle()

    @rule()
    def two_days_pass(self) -> None:
        self.clock.now += timedelta(hours=49)
        for model in self._in(PENDING):
            model.allowed = frozenset({REJECTED})
        self._settle()

    # -- forgeries and replays --------------------------------------------------------------

    @rule(
        kind=st.sampled_from(["post", "reply", "invoice", "invalid"]),
        text=st.sampled_from(TEXTS),
        forged_stamps=st.booleans(),
        body=BODIES,
    )
    def forge_into_approved(self, kind: str, text: str, forged_stamps: bool, body: str) -> None:
        """Write a note straight into Approved/, perhaps with a made-up id and approval."""
        meta: dict[str, Any] | None = {
            "post": post_meta("post", ["facebook"], text),
            "reply": post_meta("reply", ["twitter"], text),
            "invoice": invoice_meta(1),
            "invalid": INVALID_METAS[1],
        }[kind]
        assert meta is not None
        model = Model(self._new_name("forged"), meta, body)
        model.allowed = frozenset({REJECTED} if kind == "invalid" else {PENDING, REJECTED})
        content = note_text(meta, body)
        if forged_stamps:
            stamps = (
                "id: 20260101-abcdef\nstatus: approved\napproval:\n  by: policy\n"
                f"  payload_hash: {model.hash or 'sha256:0'}\n"
            )
            content = f"---\n{frontmatter(meta)}{stamps}---\n{body}"
        self._add(model, APPROVED, content.encode())
        self._settle()

    @precondition(lambda self: self._in(PENDING, FAILED))
    @rule(pick=st.integers(0, 99))
    def copy_into_approved(self, pick: int) -> None:
        """Copy a pending request (or a failed note) into Approved/ under another name."""
        original = self._pick(pick, PENDING, FAILED)
        model = Model(self._new_name("copy"), original.meta, original.body)
        model.allowed = frozenset({PENDING, REJECTED})
        self._add(model, APPROVED, self._path(original).read_bytes())
        self._settle()

    @precondition(lambda self: self._in(DONE))
    @rule(pick=st.integers(0, 99), by_moving=st.booleans())
    def replay_done(self, pick: int, by_moving: bool) -> None:
        """Put an executed note into Approved/ again: a copy, or the note itself."""
        original = self._pick(pick, DONE)
        if by_moving:
            os.rename(self._path(original), self.root / APPROVED / original.name)  # noqa: PTH104
            original.folder = APPROVED
            original.allowed = frozenset({REJECTED})
        else:
            model = Model(self._new_name("replay"), original.meta, original.body)
            model.allowed = frozenset({REJECTED})
            self._add(model, APPROVED, self._path(original).read_bytes())
        self._settle()

    # -- faults -------------------------------------------------------------------------------

    @rule(
        point=st.sampled_from(failpoints.POINTS),
        at_once=st.booleans(),
    )
    def power_cut_in_the_next_run(self, point: str, at_once: bool) -> None:
        """Arm a crash point for the next step's run; restart at once or one step later."""
        self.crash = point
        self.restart_at_once = at_once

    @rule()
    def restart(self) -> None:
        """Kill the idle daemon and start it again."""
        if self.app is not None:
            self._kill()
        crash, self.crash = self.crash, None
        self._settle()
        self.crash = crash

    @rule(
        service=st.sampled_from(["facebook", "twitter", "odoo"]),
        lose_answer=st.booleans(),
        times=st.integers(1, 2),
    )
    def service_fault(self, service: str, lose_answer: bool, times: int) -> None:
        """The next calls to a service fail, or take effect but their answer is lost."""
        (self.remote.lose if lose_answer else self.remote.refuse)[service] += times

    @rule(times=st.integers(1, 2))
    def lookups_cannot_tell(self, times: int) -> None:
        self.remote.blind_lookups += times

    # -- the promises -------------------------------------------------------------------------

    def _check(self, *, completed: bool) -> None:
        where = self._check_files()
        for model in self.files.values():
            model.folder = where[model.name]
        self._note_policy_approvals(completed)
        self._check_calls()
        self._check_done_notes()
        if completed:
            self._check_settled()

    def _check_files(self) -> dict[str, str]:
        """Every file is in exactly one folder, intact; nothing else is there. Return where."""
        seen: dict[str, list[str]] = {}
        for folder in FOLDERS:
            for entry in os.scandir(self.root / folder):
                seen.setdefault(entry.name, []).append(folder)
        where = {}
        for name, model in self.files.items():
            folders = seen.pop(name, [])
            assert len(folders) == 1, f"{name} is in {folders or 'no folder'}"
            where[name] = folders[0]
            data = (self.root / folders[0] / name).read_bytes()
            if model.raw is not None:
                assert data == model.raw, f"{name}: an unreadable file was changed"
                companion = f"{name}.rejected.md"
                assert seen.pop(companion, None) == [REJECTED], f"{companion} missing or repeated"
                continue
            text = data.decode("utf-8")
            assert text.endswith(model.body), f"{name}: body changed"
            note = notes.parse(text)
            assert note.body == model.body, f"{name}: body changed"
            assert note.user_meta == (model.meta or {}), f"{name}: user keys changed"
        assert not seen, f"files nobody put there: {seen}"
        return where

    def _note_policy_approvals(self, completed: bool) -> None:
        """A post dropped into Needs_Action/ is approved by policy, under the id vaultd gave it.

        Only on its first way through: once it rests anywhere, a later run of it needs a
        person (a retry runs what was approved then, under the same id).
        """
        for model in self.files.values():
            if model.policy_hash is None:
                continue
            if model.folder in (NEEDS_ACTION, APPROVED, DONE, FAILED):
                stamps = self._stamps(model)
                task_id = stamps.get("id")
                if (
                    isinstance(task_id, str)
                    and stamps.get("status") != "pending_approval"
                    and model.hash == model.policy_hash
                ):
                    self.policy_approved.add((task_id, model.policy_hash))
            if completed and model.folder != NEEDS_ACTION:
                model.policy_hash = None

    def _check_calls(self) -> None:
        """At most once per marker, and only for what a person or the policy approved."""
        sent = Counter(record["marker"] for record in outbox(self.state_dir))
        assert sent == Counter({m: len(h) for m, h in self.remote.calls.items()})
        approved = self.human_approved | self.policy_approved
        for marker, hashes in self.remote.calls.items():
            assert len(hashes) == 1, f"{marker} reached the service {len(hashes)} times"
            task_id = marker.split(":")[1]
            assert (task_id, hashes[0]) in approved, f"{marker}: {hashes[0]} was never approved"

    def _check_done_notes(self) -> None:
        """A note in Done/ was executed: each target once, with the payload it holds."""
        for model in self._in(DONE):
            assert model.meta is not None, f"{model.name}: an invalid note is in Done/"
            task_id = self._stamps(model)["id"]
            for target in targets_of(model.meta):
                marker = f"vaultd:{task_id}:{target}"
                calls = self.remote.calls.get(marker)
                assert calls == [model.hash], f"Done/{model.name}: {marker} sent {calls}"

    def _check_settled(self) -> None:
        """After a run that completed, everything rests where its history allows."""
        for model in self.files.values():
            assert model.folder not in (NEEDS_ACTION, APPROVED), (
                f"{model.name} was left in {model.folder}/"
            )
            if model.allowed:
                assert model.folder in model.allowed, (
                    f"{model.name} is in {model.folder}/, expected {sorted(model.allowed)}"
                )
            model.allowed = frozenset({model.folder})
            if model.folder == FAILED and model.failed_hash is None:
                model.failed_hash = model.hash
            elif model.folder != FAILED:
                model.failed_hash = None
        assert not self.errors.messages, self.errors.messages


MODEL_SETTINGS = settings(
    max_examples=3000 if NIGHTLY else 20,
    stateful_step_count=60 if NIGHTLY else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_random_sequences_keep_every_promise() -> None:
    run_state_machine_as_test(VaultModel, settings=MODEL_SETTINGS)


# -- bugs the machine found, reduced to deterministic reproductions (all fixed) -------------


def _open(vault_root: Path, state_dir: Path, clock: Any = None) -> App:
    app = open_app(vault_root, state_dir=state_dir)
    if clock is not None:
        app.pipeline.clock = clock
    return app


def _run_crashing_at(app: App, point: str) -> None:
    """Run once with a power cut armed at `point`; it must fire. Leave the app dead."""
    failpoints.arm([point])
    try:
        with pytest.raises(failpoints.Crashed):
            Runner(app.pipeline, app.config, polling=True).run_once()
    finally:
        failpoints.disarm()
        app.ledger.close()  # what the OS does for a dead process


def _run(app: App) -> None:
    Runner(app.pipeline, app.config, polling=True).run_once()


def test_a_forged_note_is_not_executed_after_a_crash_while_it_is_sent_back(
    vault_root: Path, state_dir: Path
) -> None:
    forged = "---\ntype: social_post\nplatforms: [facebook]\ntext: Hello\n---\nbody\n"
    (vault_root / APPROVED / "forged.md").write_text(forged, encoding="utf-8")
    _run_crashing_at(_open(vault_root, state_dir), "mid-move")

    app = _open(vault_root, state_dir)  # the restart
    _run(app)
    app.close()

    assert outbox(state_dir) == []  # nobody approved it
    assert (vault_root / PENDING / "forged.md").exists()


def test_a_request_whose_expiry_a_crash_interrupted_still_ends_rejected(
    vault_root: Path, state_dir: Path
) -> None:
    clock = Clock()
    payment = "---\ntype: odoo_payment\ninvoice: INV/2026/00042\namount: 45.5\n---\nbody\n"
    (vault_root / NEEDS_ACTION / "pay.md").write_text(payment, encoding="utf-8")
    app = _open(vault_root, state_dir, clock)
    _run(app)
    assert (vault_root / PENDING / "pay.md").exists()
    clock.now += timedelta(hours=49)
    _run_crashing_at(app, "mid-move")

    app = _open(vault_root, state_dir, clock)  # the restart
    _run(app)
    app.close()

    assert (vault_root / REJECTED / "pay.md").exists()
    assert notes.parse((vault_root / REJECTED / "pay.md").read_text()).meta["status"] == "expired"


def test_a_note_edited_after_a_partial_run_is_not_reported_done_for_its_edit(
    vault_root: Path, state_dir: Path
) -> None:
    remote = Remote(refuse=Counter({"twitter": 1}))
    app = _open(vault_root, state_dir)
    for name, connector in list(app.pipeline.connectors.items()):
        app.pipeline.connectors[name] = Service(connector, remote)
    post = "---\ntype: social_post\nplatforms: [facebook, twitter]\ntext: Helo\n---\nbody\n"
    (vault_root / NEEDS_ACTION / "post.md").write_text(post, encoding="utf-8")
    assert app.pipeline.process(vault_root / NEEDS_ACTION / "post.md").status == "failed"
    failed = vault_root / FAILED / "post.md"
    failed.write_text(failed.read_text().replace("text: Helo", "text: Hello"))  # the typo
    retried = app.pipeline.process(move(vault_root, failed, APPROVED))
    assert retried.status == "pending_approval"  # changed after its approval: asked again
    assert retried.path is not None

    outcome = app.pipeline.process(move(vault_root, retried.path, APPROVED))  # approved
    app.close()

    assert all(len(hashes) == 1 for hashes in remote.calls.values())
    if outcome.status == "done":  # then Done/ must be the truth, for every target
        assert outcome.path is not None
        done = notes.parse(outcome.path.read_text())
        shown = parse_action(done.user_meta).payload_hash()
        for target in ("facebook", "twitter"):
            assert remote.calls[f"vaultd:{done.meta['id']}:{target}"] == [shown], target


def test_a_flow_mapping_frontmatter_stays_readable_after_stamping(
    app: App, vault_root: Path
) -> None:
    reply = (
        "---\n{type: social_post, platforms: [facebook], kind: reply, in_reply_to: '1_2', "
        "text: Thanks}\n---\nbody\n"
    )
    (vault_root / NEEDS_ACTION / "reply.md").write_text(reply, encoding="utf-8")
    outcome = app.pipeline.process(vault_root / NEEDS_ACTION / "reply.md")
    assert outcome.status == "pending_approval"
    assert outcome.path is not None

    again = app.pipeline.process(outcome.path)  # the request as vaultd wrote it

    assert again.status != "unreadable"
    assert notes.parse(outcome.path.read_text()).body == "body\n"


def test_a_request_approved_after_its_expiry_passed_while_the_daemon_was_down_expires() -> None:
    """Found by the machine; the model was wrong, not vaultd (design §3: a request expires).

    A power cut stops the expiry run after the first of two requests, so the second still
    says `pending_approval` when a person approves it, an hour after the expiry it shows.
    vaultd expires it, as test_a_request_approved_after_it_expired_is_not_executed says it
    must; the model expected it to run.
    """
    machine = VaultModel()
    try:
        machine.start()
        machine.drop_odoo_task(invoice=True, amount=3, body="")
        machine.drop_odoo_task(invoice=True, amount=5, body="")
        machine.power_cut_in_the_next_run(point="mid-move", at_once=False)
        machine.two_days_pass()  # the cut stops the run as it expires odoo-1.md
        late = notes.parse((machine.root / PENDING / "odoo-2.md").read_text(encoding="utf-8"))
        assert late.stamps["status"] == "pending_approval"
        assert datetime.fromisoformat(late.stamps["approval"]["expires_at"]) < machine.clock.now

        machine.approve(pick=1)  # odoo-2.md, while the daemon is down; the restart follows

        rejected = (machine.root / REJECTED / "odoo-2.md").read_text(encoding="utf-8")
        assert notes.parse(rejected).stamps["status"] == "expired"
        assert machine.remote.calls == {}
    finally:
        machine.teardown()
