"""What each tool call of a skill does, after vaultd has checked it.

World-changing tools (`social.post`, `odoo.create_invoice`, `odoo.register_payment`,
`code.request_change`) never call a service. They write a task file into Needs_Action/,
exactly as an agent would, and the pipeline validates it, applies the policy, asks a person
where needed and executes it at most once. The file carries its origin (run and step), and
`approval_required: true` when the skill's manifest demands a person's approval whatever
the policy says. A skill can never set vaultd's own keys (what was approved or prepared).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daemon.agents.skills.manifest import TOOLS, SkillManifest
from daemon.agents.skills.store import STEP_DONE, STEP_REFUSED, STEP_REQUESTED, RunStore
from daemon.core.errors import ValidationFailed
from daemon.core.models import Action, OdooInvoice, OdooPayment, SocialPost
from daemon.core.notes import RESERVED_KEYS
from daemon.core.taskfile import task_note
from daemon.core.vault import NEEDS_ACTION, Vault

ACTION_TYPES = {
    "social.post": "social_post",
    "odoo.create_invoice": "odoo_invoice",
    "odoo.register_payment": "odoo_payment",
    "code.request_change": "code_task",  # always a person's approval (design §7)
}

# Tools that only read or write vaultd's own notes, by name: (arguments) -> result.
Reader = Callable[[dict[str, Any]], Any]


class Refused(Exception):
    """A tool call vaultd will not make; the message says why, naming the field."""


@dataclass
class ToolBox:
    """Answers the tool calls of one attempt of one run."""

    vault: Vault
    store: RunStore
    manifest: SkillManifest
    run_id: str
    attempt: int
    readers: dict[str, Reader]
    seq: int = 0
    requested: int = 0

    def handle(self, name: str, args: dict[str, Any]) -> tuple[str, Any]:
        self.seq += 1
        started = time.monotonic()
        try:
            if name not in TOOLS:
                raise Refused(f"unknown tool {name!r}")
            if name not in self.manifest.tools:
                raise Refused(f"tool {name!r} is not among this skill's tools")
            if TOOLS[name]:
                return "ok", self._request(name, args, started)
            result = self.readers[name](args)
        except Refused as error:
            self._record(name, args, STEP_REFUSED, started, error=str(error))
            return "error", str(error)
        except Exception as error:  # noqa: BLE001 - a reader's failure is the call's answer
            message = f"{name}: {type(error).__name__}: {error}"
            self._record(name, args, STEP_REFUSED, started, error=message)
            return "error", message
        self._record(name, args, STEP_DONE, started, output=result)
        return "ok", result

    def _request(self, name: str, args: dict[str, Any], started: float) -> dict[str, Any]:
        token = secrets.token_hex(8)
        file_name = f"{self.manifest.name}-{self.run_id}-{self.attempt}-{self.seq}.md"
        origin: dict[str, Any] = {
            "run": self.run_id,
            "step": token,
            "skill": self.manifest.name,
            "file": file_name,
        }
        if self.manifest.approval_required:
            origin["approval_required"] = True
        intro = (
            f"Requested by skill `{self.manifest.name}` in run `{self.run_id}` (step {self.seq}).\n"
        )
        reserved = sorted(set(args) & {*RESERVED_KEYS, "type", "prepared"})
        if reserved:  # vaultd's own keys: what it approved, prepared or decided
            raise Refused(f"{name}: {', '.join(reserved)} is vaultd's to write, not a skill's")
        try:
            text, action = task_note(
                {"type": ACTION_TYPES[name], **args}, intro=intro, stamps={"origin": origin}
            )
        except ValidationFailed as error:
            raise Refused(f"{name}: {error}") from None
        _check_guardrails(self.manifest, action)
        relative = f"{NEEDS_ACTION}/{file_name}"
        answer = {
            "status": "requested",
            "task_file": relative,
            "approval_required": self.manifest.approval_required,
        }
        # Recorded (durably) before the file exists: a crash never leaves a request the
        # run does not know about.
        self._record(
            name, args, STEP_REQUESTED, started, output=answer, token=token, task_file=relative
        )
        self.vault.create(NEEDS_ACTION, file_name, text)
        self.requested += 1
        return answer

    def _record(
        self,
        name: str,
        args: dict[str, Any],
        state: str,
        started: float,
        *,
        output: Any = None,
        error: str | None = None,
        token: str | None = None,
        task_file: str | None = None,
    ) -> None:
        self.store.add_step(
            self.run_id,
            self.attempt,
            self.seq,
            name,
            args,
            state=state,
            output=output,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
            token=token,
            task_file=task_file,
        )


def _check_guardrails(manifest: SkillManifest, action: Action) -> None:
    rails = manifest.guardrails
    if rails.allowed_platforms is not None and isinstance(action, SocialPost):
        refused = [p for p in action.platforms if p not in rails.allowed_platforms]
        if refused:
            raise Refused(
                f"guardrail allowed_platforms: {', '.join(refused)} not allowed "
                f"(allowed: {', '.join(rails.allowed_platforms) or 'none'})"
            )
    if rails.max_amount is not None and isinstance(action, OdooInvoice | OdooPayment):
        amount = action.total()
        if amount > rails.max_amount:
            raise Refused(
                f"guardrail max_amount: {amount} is over this skill's limit of {rails.max_amount}"
            )
