"""Issue 5, item 1: every named crash point, live, against the loopback stand-ins.

For each point in daemon/core/failpoints.py the real `vaultd run --live --once` kills itself
(SIGKILL) there once per call (once per file for `mid-move`; once per Odoo call for
`mid-call`, between an invoice's draft and its post, or a payment's wizard and its run), and
is started again with the same environment until it finishes. The workload mixes posts to
Facebook, Instagram and X (one of them to all three) with Odoo invoices and payments, all
approved by policy. Then:

- no remote object exists twice, and no destructive request reached a service twice (the
  stand-ins' own objects and request logs);
- every file is in Done/ exactly once, its body byte for byte as written;
- a call whose outcome the crash left unknown was settled by a marker lookup, as the
  ledger's steps and the audit log's `reconciled` entries show; one already recorded DONE
  is not looked up again; a draft invoice a crash left is posted, never made twice, and
  every invoice ends posted;
- SQLite's `PRAGMA integrity_check` says "ok" after every start.

The six scenarios run side by side (a module fixture; each has its own stand-ins, vault and
state) to keep the file fast; each test then checks one property of one scenario.
VAULTD_NIGHTLY=1 runs more actions per point.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import make_files
from e2e_support import (
    LiveTask,
    assert_each_file_once_with_its_body,
    audit_events,
    expected_calls,
    integrity,
    ledger_steps,
    ledger_task_states,
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
from standins.all import running_all

from daemon.core.failpoints import POINTS
from daemon.core.vault import Vault

pytestmark = pytest.mark.e2e

ACTIONS = 60 if nightly() else 6
# CI runs, per point, a post to all three platforms, an invoice and a payment: every service,
# tasks of one call and of three: five calls. The single-platform posts (three more
# starts a point, each as the multi-platform post's calls) run nightly.
CI_KINDS = ("multi", "invoice", "payment")
KILLED = -signal.SIGKILL


@dataclass
class Scenario:
    """One crash point's run: what was asked, what vaultd did, and what the services saw."""

    point: str
    root: Path
    tasks: list[LiveTask] = field(default_factory=list)
    kills: int = 0
    verdicts: list[str] = field(default_factory=list)  # integrity_check after each start
    fired: set[str] = field(default_factory=set)
    sent: Counter[str] = field(default_factory=Counter)
    objects: dict[tuple[str, str], int] = field(default_factory=dict)
    markers: dict[str, list[str]] = field(default_factory=dict)
    invoices: list[dict[str, Any]] = field(default_factory=list)  # Odoo's, vaultd's marker
    error: BaseException | None = None

    @property
    def vault(self) -> Path:
        return self.root / "vault"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def check(self) -> Scenario:
        if self.error is not None:
            raise AssertionError(f"the {self.point} scenario did not finish") from self.error
        return self


def crash_until_done(scenario: Scenario) -> None:
    """Run vaultd with the crash point armed until a start finishes, then once more."""
    root, vault, state = scenario.root, scenario.vault, scenario.state
    Vault(vault).ensure_folders()
    with running_all() as standins:
        standins.graph.reads_to_finish = 0  # Instagram containers are ready at once
        tasks = live_tasks(ACTIONS, scenario.point, seed_invoice(standins.odoo.odoo))
        scenario.tasks = tasks = tasks if nightly() else [t for t in tasks if t.kind in CI_KINDS]
        before = write_calls(standins)  # the seeded invoice
        make_files(vault, {f"Needs_Action/{task.name}": task.note() for task in tasks})
        env_file = write_env_file(root / "live.env", standins.env())
        config = write_live_config(root / "config.toml")
        fired = root / "failpoints.fired"
        args = ("run", "--vault", vault, "--state-dir", state, "--once", "--live")
        args += ("--env-file", env_file, "--config", config)
        home = {"XDG_CONFIG_HOME": str(root / "xdg"), "XDG_STATE_HOME": str(root / "xdg")}
        crash = {**home, "VAULTD_FAILPOINT": scenario.point, "VAULTD_FAILPOINT_ONCE": str(fired)}

        calls = sum(len(task.targets) for task in tasks)
        for _ in range(calls + len(tasks) + 5):
            process = vaultd(*args, env=crash, timeout=120)
            scenario.verdicts.append(integrity(state))
            if process.returncode == 0:
                break
            assert process.returncode == KILLED, (
                f"exit {process.returncode}\nstdout:\n{process.stdout}\nstderr:\n{process.stderr}"
            )
            scenario.kills += 1
        else:
            raise AssertionError(f"vaultd still crashing after {scenario.kills} starts")
        # One more start, without the crash: nothing is left to do, nothing runs again.
        ok(vaultd(*args, env=home, timeout=120))
        scenario.verdicts.append(integrity(state))

        lines = fired.read_text(encoding="utf-8").splitlines() if fired.exists() else []
        scenario.fired = {line.split(" ", 1)[1] for line in lines}
        scenario.sent = write_calls(standins)
        scenario.sent.subtract(before)
        scenario.objects = {
            (task.name, target): remote_objects(standins, task, target)
            for task in tasks
            for target in task.targets
        }
        scenario.markers = {
            task.name: remote_markers(standins, task)
            for task in tasks
            if task.kind in ("invoice", "payment")
        }
        scenario.invoices = [
            m
            for m in standins.odoo.odoo.table("account.move")
            if str(m.get("ref") or "").startswith("vaultd:")
        ]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scenario]]:
    runs = {point: Scenario(point, tmp_path_factory.mktemp(point)) for point in POINTS}

    def run(scenario: Scenario) -> None:
        try:
            crash_until_done(scenario)
        except BaseException as error:  # noqa: BLE001 - reported by each test of it
            scenario.error = error

    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 1) + 1)) as pool:
        list(pool.map(run, runs.values()))
    yield runs


def scenario_ids(scenario: Scenario) -> dict[str, str]:
    located = assert_each_file_once_with_its_body(scenario.vault, scenario.tasks, folders=("Done",))
    return task_ids(scenario.vault, located)


def all_markers(scenario: Scenario) -> set[str]:
    ids = scenario_ids(scenario)
    return {f"vaultd:{ids[t.name]}:{target}" for t in scenario.tasks for target in t.targets}


def test_every_crash_point_is_covered():
    assert set(POINTS) == {
        "before-intent",
        "after-intent",
        "mid-call",
        "after-call",
        "after-done",
        "mid-move",
    }


@pytest.mark.parametrize("point", POINTS)
def test_the_crash_fired_once_for_every_call_and_the_ledger_stayed_sound(
    point: str, scenarios: dict[str, Scenario]
):
    scenario = scenarios[point].check()
    expected = (
        {task.name for task in scenario.tasks} if point == "mid-move" else all_markers(scenario)
    )
    if point == "mid-call":  # only Odoo's calls are two writes
        expected = {marker for marker in expected if marker.endswith(":odoo")}
        assert len(expected) == sum(t.kind in ("invoice", "payment") for t in scenario.tasks)
    assert scenario.fired == expected
    assert scenario.kills == len(expected)
    assert len(scenario.verdicts) == scenario.kills + 2
    assert set(scenario.verdicts) == {"ok"}


@pytest.mark.parametrize("point", POINTS)
def test_every_file_is_in_done_once_with_its_body(point: str, scenarios: dict[str, Scenario]):
    scenario = scenarios[point].check()
    ids = scenario_ids(scenario)  # asserts Done/ only, once each, bodies and keys intact
    assert ledger_task_states(scenario.state) == {
        ids[task.name]: ("done", f"Done/{task.name}") for task in scenario.tasks
    }
    for task in scenario.tasks:
        stamps = meta((scenario.vault / "Done" / task.name).read_text(encoding="utf-8"))
        assert stamps["status"] == "done"
        assert set(task.targets) <= set(stamps["result"])
        assert stamps["result"]["dry_run"] is False


@pytest.mark.parametrize("point", POINTS)
def test_no_remote_object_exists_twice_and_no_write_was_sent_twice(
    point: str, scenarios: dict[str, Scenario]
):
    scenario = scenarios[point].check()
    ids = scenario_ids(scenario)
    not_once = {call: n for call, n in scenario.objects.items() if n != 1}
    assert not_once == {}, "remote objects per call, where not exactly one"
    assert scenario.markers == {name: [f"vaultd:{ids[name]}:odoo"] for name in scenario.markers}
    assert +scenario.sent == expected_calls(scenario.tasks)


@pytest.mark.parametrize("point", POINTS)
def test_every_invoice_is_one_posted_invoice_and_its_note_says_so(
    point: str, scenarios: dict[str, Scenario]
):
    """A kill anywhere in an invoice's two writes (after the draft, before the post; after
    the post, before DONE) ends with one posted invoice, its number in the Done/ note."""
    scenario = scenarios[point].check()
    ids = scenario_ids(scenario)
    for task in scenario.tasks:
        if task.kind != "invoice":
            continue
        marker = f"vaultd:{ids[task.name]}:odoo"
        (move,) = [m for m in scenario.invoices if m["ref"] == marker]
        assert move["state"] == "posted", (task.name, move)
        stamps = meta((scenario.vault / "Done" / task.name).read_text(encoding="utf-8"))
        assert stamps["result"]["odoo"]["number"] == move["name"], (task.name, stamps)
        assert stamps["result"]["odoo"]["invoice_id"] == move["id"]


@pytest.mark.parametrize("point", POINTS)
def test_each_call_succeeded_once_in_the_ledger(point: str, scenarios: dict[str, Scenario]):
    """One succeeded step per call; after an INTENT with no call, one proven-absent step;
    after a draft invoice with no post, one unfinished step (then the post); after a
    payment's wizard with no payment, one proven-absent step."""
    scenario = scenarios[point].check()
    ids = scenario_ids(scenario)
    steps = ledger_steps(scenario.state)
    assert set(steps) == set(ids.values())
    for task in scenario.tasks:
        wanted = ["absent", "succeeded"] if point == "after-intent" else ["succeeded"]
        if point == "mid-call" and task.kind == "invoice":
            wanted = ["unfinished", "succeeded"]
        elif point == "mid-call" and task.kind == "payment":
            wanted = ["absent", "succeeded"]
        task_id = ids[task.name]
        assert {target for target, _, _ in steps[task_id]} == set(task.targets)
        for target in task.targets:
            marker = f"vaultd:{task_id}:{target}"
            states = [s for t, s, m in steps[task_id] if t == target and m == marker]
            assert states == wanted, (task.name, target, steps[task_id])


@pytest.mark.parametrize("point", POINTS)
def test_only_calls_in_doubt_are_looked_up_and_each_is_settled(
    point: str, scenarios: dict[str, Scenario]
):
    """after-intent: every call proven absent (then made once); mid-call: every invoice an
    unfinished draft (then posted), every payment absent (then made once); after-call: every
    call found (never made again); elsewhere nothing is in doubt, so nothing is looked up."""
    scenario = scenarios[point].check()
    markers = all_markers(scenario)
    events = [e for e in audit_events(scenario.vault) if e["event"] == "reconciled"]
    lookups = {e["result"]["marker"]: e["result"]["lookup"] for e in events}
    assert len(events) == len(lookups), "a call was looked up more than once"
    if point == "after-intent":
        assert lookups == dict.fromkeys(markers, "absent")
    elif point == "mid-call":
        ids = scenario_ids(scenario)
        assert lookups == {
            f"vaultd:{ids[t.name]}:odoo": "unfinished" if t.kind == "invoice" else "absent"
            for t in scenario.tasks
            if t.kind in ("invoice", "payment")
        }
    elif point == "after-call":
        assert lookups == dict.fromkeys(markers, "found")
    else:
        assert lookups == {}


def test_a_call_recorded_done_before_a_crash_finishes_while_the_service_is_down(
    vault_root: Path, state_dir: Path, tmp_path: Path
):
    """DONE is recorded before the crash at after-done: the restart needs no lookup, so the
    invoice reaches Done/ even though Odoo now answers every request with 503."""
    with running_all() as standins:
        (task,) = live_tasks(1, "down", "-", start=2)  # kind 2: an invoice
        assert task.kind == "invoice"
        make_files(vault_root, {f"Needs_Action/{task.name}": task.note()})
        env_file = write_env_file(tmp_path / "live.env", standins.env())
        config = write_live_config(tmp_path / "config.toml")
        args = ("run", "--vault", vault_root, "--state-dir", state_dir, "--once", "--live")
        args += ("--env-file", env_file, "--config", config)

        crashed = vaultd(*args, failpoint="after-done", timeout=60)
        assert crashed.returncode == KILLED, crashed.stderr
        assert integrity(state_dir) == "ok"
        assert remote_objects(standins, task, "odoo") == 1

        odoo = standins.odoo.odoo
        odoo.http_errors = [503] * 50  # Odoo is down from now on
        ok(vaultd(*args, timeout=60))
        asked = 50 - len(odoo.http_errors)

    assert_each_file_once_with_its_body(vault_root, [task], folders=("Done", "Failed"))
    assert (vault_root / "Done" / task.name).exists(), "the invoice ended in Failed/"
    assert asked == 0, f"vaultd asked Odoo {asked} times about a call it had recorded DONE"
