"""`vaultd skills ...` and `vaultd runs ...`: what agents can ask for, and what they asked.

vaultd skills list | show NAME
vaultd runs list [--state S] [--channel C] [--skill K] | show ID | execute ID | cancel ID
vaultd runs create SKILL [--input JSON] [--execute [--wait] [--priority N] [--webhook URL]]

`runs create --execute` enqueues the run for `vaultd run`'s workers; `--wait` follows it to
its end (succeeded, failed or cancelled), showing each change of state.

`runs cancel` withdraws the run's requests that are not yet executing (to Rejected/, "run
cancelled"), and says of each request what became of it: one already executed stays done.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.agents.queue.service import Options, RunQueue
from daemon.agents.skills.registry import Registry, load_registry
from daemon.agents.skills.runs import RunError, Runs, RunView
from daemon.agents.skills.service import open_runs
from daemon.agents.skills.store import FINISHED, SUCCEEDED, TRANSITIONS
from daemon.core.config import default_config_path, load_config
from daemon.core.errors import ConfigError
from daemon.core.webhook_config import check_url
from daemon.service.app import open_app

Add = Callable[..., argparse.ArgumentParser]
STATES = sorted(TRANSITIONS)


def register(commands: Any, add_vault: Callable[..., None]) -> None:
    """Add the `skills` and `runs` commands to the `vaultd` parser."""
    skills = commands.add_parser("skills", help="the skills agents can run (built-in and yours)")
    skill_commands = skills.add_subparsers(dest="skills_command", metavar="SUBCOMMAND")
    listing = skill_commands.add_parser("list", help="every skill, and every skill skipped")
    add_vault(listing, config=True)
    listing.set_defaults(func=cmd_skills_list)
    show = skill_commands.add_parser("show", help="one skill's definition and input schema")
    add_vault(show, config=True)
    show.add_argument("name")
    show.set_defaults(func=cmd_skills_show)
    skills.set_defaults(func=_usage(skills))

    runs = commands.add_parser("runs", help="skill runs: their state, output and trace")
    run_commands = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    listing = run_commands.add_parser("list", help="the latest runs, newest first")
    add_vault(listing, config=True, state=True)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--state", choices=STATES, help="only runs in this state")
    listing.add_argument("--channel", help="only runs enqueued in this channel")
    listing.add_argument("--skill", help="only runs of this skill")
    listing.set_defaults(func=cmd_runs_list)
    show = run_commands.add_parser("show", help="one run with its trace")
    add_vault(show, config=True, state=True)
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(func=cmd_runs_show)
    create = run_commands.add_parser("create", help="create a run (a draft unless --execute)")
    add_vault(create, config=True, state=True)
    create.add_argument("skill")
    create.add_argument("--input", default="{}", help="the inputs as a JSON object")
    create.add_argument(
        "--execute", action="store_true", help="enqueue it for the workers of `vaultd run`"
    )
    create.add_argument("--priority", type=int, default=10, help="with --execute: lower first")
    create.add_argument(
        "--wait", action="store_true", help="with --execute: follow the run to its end"
    )
    create.add_argument(
        "--webhook",
        metavar="URL",
        help="with --execute: a URL told (signed) when the run ends or waits for approval",
    )
    create.set_defaults(func=cmd_runs_create)
    execute = run_commands.add_parser("execute", help="execute a draft or failed run")
    add_vault(execute, config=True, state=True)
    execute.add_argument("id")
    execute.set_defaults(func=cmd_runs_execute)
    cancel = run_commands.add_parser(
        "cancel",
        help="cancel a draft, or a run waiting for approval (withdraws its requests not yet "
        "executed; those executed stay done)",
    )
    add_vault(cancel, config=True, state=True)
    cancel.add_argument("id")
    cancel.add_argument("--reason", default="cancelled from the command line")
    cancel.set_defaults(func=cmd_runs_cancel)
    runs.set_defaults(func=_usage(runs))


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return usage


def _registry(args: argparse.Namespace) -> Registry:
    config = load_config(args.config or default_config_path())
    return load_registry(config.skills, vault=Path(args.vault))


def cmd_skills_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    for skill in registry.listed():
        where = "built-in" if skill.builtin else str(skill.folder)
        approval = "approval required" if skill.manifest.approval_required else "policy decides"
        print(f"{skill.key:<22} {skill.manifest.description}")
        print(f"{'':<22} tools: {', '.join(skill.manifest.tools) or 'none'}; {approval}; {where}")
    for problem in registry.problems:
        print(f"skipped {problem}")
    return 1 if registry.problems else 0


def cmd_skills_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    skill = registry.get(args.name)
    if skill is None:
        known = ", ".join(s.key for s in registry.listed())
        raise ConfigError(f"no skill named {args.name!r} (known: {known})")
    print(json.dumps(skill.manifest.model_dump(mode="json"), indent=2, ensure_ascii=False))
    print(f"folder: {skill.folder}")
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    app = open_app(args.vault, config_path=args.config, state_dir=args.state_dir)
    try:
        runs = open_runs(app)
        runs.refresh_waiting()  # a state asked for is the state now
        queue = RunQueue(runs, app.config.queue)
        listed = queue.listed(
            state=args.state, channel=args.channel, skill=args.skill, limit=args.limit
        )
    finally:
        app.close()
    if not listed:
        print("no runs" + (" like that" if args.state or args.channel or args.skill else " yet"))
    for run, channel in listed:
        print(f"{run.id}  {run.state:<17} {run.skill:<20} {channel or '-':<10} {run.created_at}")
        if run.error:
            print(f"    {' '.join(run.error.split())[:200]}")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    return _with_runs(args, lambda runs: runs.view(args.id))


def cmd_runs_create(args: argparse.Namespace) -> int:
    try:
        inputs = json.loads(args.input)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--input is not JSON: {error}") from None
    if not args.execute:
        return _with_runs(
            args, lambda runs: runs.create(args.skill, inputs, requested_by=f"cli:{_user()}")
        )
    if not 0 <= args.priority <= 1000:
        raise ConfigError(f"--priority {args.priority}: from 0 to 1000")
    if args.webhook is not None and not args.execute:
        raise ConfigError("--webhook: only with --execute (a draft is not queued)")
    app = open_app(args.vault, config_path=args.config, state_dir=args.state_dir)
    try:
        webhook = None
        if args.webhook is not None:
            try:
                webhook = check_url(args.webhook, app.config.webhooks.allowed_hosts)
            except ValueError as error:
                raise ConfigError(f"--webhook: {error}") from None
        runs = open_runs(app)
        queue = RunQueue(runs, app.config.queue)
        try:
            view = queue.enqueue(
                args.skill,
                inputs,
                requested_by=f"cli:{_user()}",
                options=Options(args.priority, webhook=webhook),
            )
        except RunError as error:
            print(f"vaultd: {error}")
            return 1
        print(format_run(view))
        return follow(runs, view.run.id) if args.wait else 0
    finally:
        app.close()


def follow(runs: Runs, run_id: str, *, every: float = 0.5) -> int:
    """Given a run, print each change of its state until it ends; return 0 if it
    succeeded, 1 if it failed or was cancelled."""
    print("waiting for the workers of `vaultd run` (Ctrl-C stops waiting, not the run)")
    shown = None
    while True:
        view = runs.view(run_id)
        if view.run.state != shown:
            shown = view.run.state
            print(f"{run_id}: {shown}", flush=True)
        if shown in FINISHED:
            print(format_run(view))
            return 0 if shown == SUCCEEDED else 1
        time.sleep(every)


def cmd_runs_execute(args: argparse.Namespace) -> int:
    return _with_runs(args, lambda runs: runs.execute(args.id))


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    return _with_runs(args, lambda runs: runs.cancel(args.id, reason=args.reason))


def _with_runs(args: argparse.Namespace, action: Callable[[Any], RunView]) -> int:
    app = open_app(args.vault, config_path=args.config, state_dir=args.state_dir)
    try:
        view = action(open_runs(app))
    except RunError as error:
        print(f"vaultd: {error}")
        return 1
    finally:
        app.close()
    if getattr(args, "json", False):
        print(json.dumps(view.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_run(view))
    return 0


def format_run(view: RunView) -> str:
    run = view.run
    lines = [
        f"run {run.id}: {run.state}",
        f"  skill {run.skill}, attempt {run.attempt}, requested by {run.requested_by or '-'}",
        f"  created {run.created_at}; started {run.started_at or '-'}; "
        f"finished {run.finished_at or '-'}",
        f"  inputs {json.dumps(run.inputs, ensure_ascii=False)}",
    ]
    if run.output is not None:
        lines.append(f"  output {json.dumps(run.output, ensure_ascii=False)}")
    if run.error:
        lines.append(f"  error {run.error}")
    lines.append("  trace:" if view.trace else "  trace: no tool calls")
    for step in view.trace:
        took = f"{step.duration_ms} ms" if step.duration_ms is not None else "-"
        lines.append(f"    {step.attempt}.{step.seq} {step.tool} [{step.state}] {took}")
        lines.append(f"        inputs {json.dumps(step.inputs, ensure_ascii=False)}")
        if step.output is not None:
            lines.append(f"        output {json.dumps(step.output, ensure_ascii=False)}")
        if step.error:
            lines.append(f"        error {step.error}")
    if view.notices:
        lines.append("  its requests:")
        lines.extend(f"    {notice}" for notice in view.notices)
    if run.state == "awaiting_approval":
        lines.append("  waiting for a person: see Pending_Approval/ (vaultd status)")
    return "\n".join(lines)


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "local"
