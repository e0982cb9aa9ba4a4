"""Helpers for the end-to-end tests: run the real `vaultd` CLI and read what it left behind.

Everything here looks at the outside of vaultd only: the vault's files, the dry-run outbox
(which plays the remote service) and the ledger database as SQLite sees it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import forkserver
import yaml
from conftest import outbox
from standins.all import StandIns
from standins.odoo import FakeOdoo
from standins.x_api import shorten

TEMPLATE = Path(__file__).resolve().parents[2] / "vault_template"
BLOCK_BEGIN = "<!-- vaultd:begin"
BLOCK_END = "<!-- vaultd:end -->\n"


def vaultd(
    *args: str | Path,
    failpoint: str | None = None,
    timeout: float = 30,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the vaultd CLI to completion and return the finished process.

    `env` adds to (or overrides) the environment, e.g. VAULTD_FAILPOINT_ONCE.
    """
    env = _environment(failpoint, env)
    return forkserver.run(list(map(str, args)), env=env, timeout=timeout)


def _environment(failpoint: str | None, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VAULTD_FAILPOINT", None)
    env.pop("VAULTD_FAILPOINT_ONCE", None)
    if failpoint:
        env["VAULTD_FAILPOINT"] = failpoint
    env.update(extra or {})
    return env


def ok(process: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Return the process if it exited 0; fail with its output otherwise."""
    assert process.returncode == 0, (
        f"exit {process.returncode}\nstdout:\n{process.stdout}\nstderr:\n{process.stderr}"
    )
    return process


class Daemon:
    """A long-running `vaultd run` subprocess whose output goes to a file (never a full pipe)."""

    def __init__(
        self, vault: Path, state: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = state.parent / f"daemon-{os.getpid()}-{id(self)}.log"
        self._log: IO[str] = self.log_path.open("w", encoding="utf-8")
        args = ["run", "--vault", str(vault), "--state-dir", str(state), *extra]
        self.process = forkserver.start(args, env=_environment(None, env), log=self._log)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 10, sig: int = signal.SIGTERM) -> int:
        """Send SIGTERM (or `sig`) and return the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def split_note(text: str) -> tuple[str, str]:
    """Return (raw frontmatter, the user's body) of a note, vaultd's rendered block left out."""
    assert text.startswith("---\n"), text
    raw, _, body = text[4:].partition("\n---\n")
    if body.startswith(BLOCK_BEGIN):
        block, found, body = body.partition(BLOCK_END)
        assert found, f"vaultd's block is not closed:\n{block}"
    return raw + "\n", body


def meta(text: str) -> dict[str, Any]:
    """Return the parsed frontmatter of a note."""
    data = yaml.safe_load(split_note(text)[0])
    assert isinstance(data, dict)
    return data


def calls_per_marker(state: Path) -> Counter[str]:
    return Counter(record["marker"] for record in outbox(state))


def integrity(state: Path) -> str:
    """Return SQLite's own verdict on the ledger database ("ok" when sound)."""
    db = sqlite3.connect(state / "ledger.sqlite3")
    try:
        (verdict,) = db.execute("PRAGMA integrity_check").fetchone()
    finally:
        db.close()
    return str(verdict)


def audit_events(vault: Path) -> list[dict[str, Any]]:
    """Return every line of the audit log, across days, in order."""
    events = []
    for path in sorted((vault / "Logs").glob("*.json")):
        events += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return events


# -- Live mode against the loopback stand-ins (tests/standins) -----------------------------

PIPELINE_FOLDERS = ("Needs_Action", "Pending_Approval", "Approved", "Rejected", "Done", "Failed")
TERMINAL_FOLDERS = ("Done", "Rejected", "Failed")
# The order live tasks are drawn in: every service, and a post to all three platforms.
LIVE_KINDS = ("facebook", "twitter", "invoice", "instagram", "payment", "multi")
SERVICES = ("facebook", "instagram", "twitter", "odoo")


def nightly() -> bool:
    """Whether the long (nightly) variants of the crash tests run: VAULTD_NIGHTLY=1."""
    return os.environ.get("VAULTD_NIGHTLY") == "1"


@dataclass(frozen=True)
class LiveTask:
    """One task file of a live workload: what it asks for, and the body it must keep."""

    name: str
    kind: str  # one of LIVE_KINDS
    meta: dict[str, Any]
    body: str

    @property
    def targets(self) -> list[str]:
        if self.kind in ("invoice", "payment"):
            return ["odoo"]
        return list(self.meta["platforms"])

    @property
    def text(self) -> str:
        return str(self.meta.get("text", ""))

    @property
    def amount(self) -> float:
        if self.kind == "invoice":
            return float(self.meta["lines"][0]["price_unit"])
        return float(self.meta.get("amount", 0))

    def note(self) -> str:
        raw = yaml.safe_dump(self.meta, sort_keys=False, allow_unicode=True)
        return f"---\n{raw}---\n{self.body}"


def seed_invoice(odoo: FakeOdoo, total: float = 100_000) -> str:
    """Create and post an invoice in the stand-in Odoo (as a person would); return its number.

    Payments of the live workloads are made against it.
    """
    (partner,) = odoo.execute("res.partner", "search", [[["name", "=", "Acme Corp"]]], {})
    (product,) = odoo.execute("product.product", "search", [[["default_code", "=", "CONS"]]], {})
    line = {"product_id": product, "quantity": 1, "price_unit": total}
    values = {"move_type": "out_invoice", "partner_id": partner, "invoice_line_ids": [[0, 0, line]]}
    move_id = odoo.execute("account.move", "create", [values], {})
    odoo.execute("account.move", "action_post", [[move_id]], {})
    (invoice,) = odoo.execute("account.move", "read", [[move_id], ["name"]], {})
    return str(invoice["name"])


def live_tasks(count: int, tag: str, invoice_number: str, *, start: int = 0) -> list[LiveTask]:
    """Return `count` distinct tasks that policy approves by itself, cycling LIVE_KINDS.

    Posts are scheduled social posts; invoices are under 100 USD to a known, recurring
    partner; payments are under 100 USD against `invoice_number`. Every text and amount is
    unique, so no two tasks are the same action and each remote object can be counted.
    """
    tasks = []
    for i in range(start, start + count):
        kind = LIVE_KINDS[i % len(LIVE_KINDS)]
        name = f"{tag}-{i:04d}-{kind}.md"
        body = (
            f"Context for {name}: ünïcødé ✓, a `code` span and a [[wiki link]].\n\n"
            "- keep me byte for byte\n"
            "\ttabs and trailing spaces   \n"
        )
        text = f"{tag} update {i} ({kind}): see what is new"
        meta: dict[str, Any]
        if kind in ("facebook", "twitter", "instagram", "multi"):
            platforms = ["facebook", "instagram", "twitter"] if kind == "multi" else [kind]
            meta = {"type": "social_post", "platforms": platforms, "text": text}
            if "instagram" in platforms:
                meta["image_url"] = f"https://example.com/{tag}/{i}.jpg"
        elif kind == "invoice":
            price = round(10 + i / 100, 2)
            meta = {
                "type": "odoo_invoice",
                "partner": "Acme Corp",
                "recurring": True,
                "lines": [{"product": "Consulting", "quantity": 1, "price_unit": price}],
            }
        else:
            amount = round(1 + i / 100, 2)
            meta = {"type": "odoo_payment", "invoice": invoice_number, "amount": amount}
        tasks.append(LiveTask(name, kind, meta, body))
    return tasks


# The live tests drop hundreds of auto-approved actions a run: far over the daily budgets.
UNLIMITED_BUDGETS = (
    "[policy]\n"
    "daily_partner_budget = { USD = 100000000 }\n"
    "daily_budget = { USD = 100000000 }\n"
    "daily_posts_per_platform = 100000000\n"
)


def write_live_config(path: Path, *, stability_ms: int = 0, fail_max: int = 1000) -> Path:
    """Write a vaultd config for the live tests: no stability wait, a tolerant breaker."""
    path.write_text(
        "[daemon]\n"
        f"stability_ms = {stability_ms}\n"
        "rescan_seconds = 1\n"
        "dashboard_seconds = 5\n"
        "[breaker]\n"
        f"fail_max = {fail_max}\n" + UNLIMITED_BUDGETS,
        encoding="utf-8",
    )
    return path


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def where_is(vault: Path) -> dict[str, list[str]]:
    """Return {file name: [folders it is in]} for every note in the pipeline folders."""
    found: dict[str, list[str]] = {}
    for folder in PIPELINE_FOLDERS:
        for path in sorted((vault / folder).iterdir()):
            if not path.name.startswith("."):
                found.setdefault(path.name, []).append(folder)
    return found


def assert_each_file_once_with_its_body(
    vault: Path, tasks: list[LiveTask], *, folders: tuple[str, ...] = TERMINAL_FOLDERS
) -> dict[str, str]:
    """Every task's file is in exactly one of `folders`, nowhere else, and no stray file
    exists; its body and the user's keys are intact. Return {name: folder}."""
    places = where_is(vault)
    names = {task.name for task in tasks}
    assert set(places) == names, (
        f"missing: {sorted(names - set(places))}, unexpected: {sorted(set(places) - names)}"
    )
    located = {}
    for task in tasks:
        assert len(places[task.name]) == 1, (task.name, places[task.name])
        (folder,) = places[task.name]
        assert folder in folders, (task.name, folder)
        text = (vault / folder / task.name).read_text(encoding="utf-8")
        assert split_note(text)[1] == task.body, (task.name, text)
        stamps = meta(text)
        for key, value in task.meta.items():
            assert stamps[key] == value, (task.name, key, stamps[key], value)
        located[task.name] = folder
    return located


def task_ids(vault: Path, located: dict[str, str]) -> dict[str, str]:
    """Return {file name: vaultd's task id} from the notes' frontmatter."""
    return {
        name: str(meta((vault / folder / name).read_text(encoding="utf-8"))["id"])
        for name, folder in located.items()
    }


def remote_objects(standins: StandIns, task: LiveTask, target: str) -> int:
    """How many remote objects exist for one call of a task (counted by its text or amount)."""
    if target == "facebook":
        return sum(1 for p in standins.graph.posts if p["message"] == task.text)
    if target == "instagram":
        return sum(1 for m in standins.graph.media if m["caption"] == task.text)
    if target == "twitter":
        return sum(1 for t in standins.x.state.tweets if t.text == shorten(task.text))
    odoo = standins.odoo.odoo
    if task.kind == "invoice":
        return sum(
            1
            for m in odoo.table("account.move")
            if str(m.get("ref") or "").startswith("vaultd:") and m["amount_total"] == task.amount
        )
    return sum(1 for p in odoo.table("account.payment") if p["amount"] == task.amount)


def remote_markers(standins: StandIns, task: LiveTask) -> list[str]:
    """The vaultd markers Odoo holds for an invoice (ref) or payment (memo) task."""
    odoo = standins.odoo.odoo
    if task.kind == "invoice":
        return [
            str(m["ref"])
            for m in odoo.table("account.move")
            if str(m.get("ref") or "").startswith("vaultd:") and m["amount_total"] == task.amount
        ]
    return [str(p["memo"]) for p in odoo.table("account.payment") if p["amount"] == task.amount]


def write_calls(standins: StandIns) -> Counter[str]:
    """The destructive calls that reached the stand-ins, by name (the services' own logs)."""
    graph, odoo = standins.graph, standins.odoo.odoo
    feed = ("POST", f"/{graph.version}/{graph.page_id}/feed")
    publish = ("POST", f"/{graph.version}/{graph.ig_id}/media_publish")
    return Counter(
        {
            "facebook": graph.requests.count(feed),
            "instagram": graph.requests.count(publish),
            "twitter": standins.x.state.posts(),
            "odoo.invoice.create": odoo.calls["account.move.create"],
            "odoo.invoice.post": odoo.calls["account.move.action_post"],
            "odoo.payment": odoo.calls["account.payment.register.action_create_payments"],
        }
    )


def expected_calls(tasks: list[LiveTask]) -> Counter[str]:
    """One destructive call per target of each task (an invoice is created, then posted)."""
    wanted: Counter[str] = Counter()
    for task in tasks:
        for target in task.targets:
            if task.kind == "invoice":
                wanted.update(["odoo.invoice.create", "odoo.invoice.post"])
            elif task.kind == "payment":
                wanted["odoo.payment"] += 1
            else:
                wanted[target] += 1
    return wanted


def ledger_steps(state: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Return {task id: [(target, step state, marker), ...]} in the order they were made."""
    db = sqlite3.connect(f"file:{state / 'ledger.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT task_id, target, state, marker FROM steps ORDER BY id").fetchall()
    finally:
        db.close()
    steps: dict[str, list[tuple[str, str, str]]] = {}
    for task_id, target, step_state, marker in rows:
        steps.setdefault(task_id, []).append((target, step_state, marker))
    return steps


def ledger_task_states(state: Path) -> dict[str, tuple[str, str]]:
    """Return {task id: (state, file)} as the ledger has them."""
    db = sqlite3.connect(f"file:{state / 'ledger.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, state, file FROM tasks").fetchall()
    finally:
        db.close()
    return {task_id: (task_state, file) for task_id, task_state, file in rows}
