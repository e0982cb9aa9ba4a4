"""Approval requests: the block at the top of a pending note that tells a human what to decide.

Rendered from `templates/approval_request.md.j2`, so the wording can be changed without
touching code. Every value from the task (and every text that names one, such as the
policy's reason) goes into the template through `daemon/core/quoting.py` (the filters `code` and
`cell`, and `text_block`): what the approver reads is all of what runs, and nothing in a
value can restyle the request or end vaultd's block.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.connectors import targets
from daemon.connectors.odoo import odoo_location
from daemon.core.hints import Hints
from daemon.core.models import Action, CodeTask, OdooInvoice, OdooPayment, SocialPost
from daemon.core.notes import BLOCK_BEGIN
from daemon.core.policy import Decision
from daemon.core.quoting import block, cell, code
from daemon.core.request_versions import Changed

if TYPE_CHECKING:
    import jinja2

    from daemon.lifecycle.code_tasks import PatchView

PACKAGE = Path(__file__).resolve().parents[1]  # daemon/


def resource_dir(name: str) -> Path:
    """Return a folder shipped with vaultd: inside the package when installed, else the repo."""
    for candidate in (PACKAGE / name, PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"vaultd is missing its {name}/ folder")


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment, made on the first request rendered: jinja2 costs a tenth
    of a second to import, and most starts of vaultd (`status`, `approve`, `run --once` on
    posts) render no request."""
    import jinja2  # noqa: PLC0415 (see above)

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - Markdown, not HTML
        # Compiling the templates took a seventh of a second on every start; jinja2 keeps
        # the compiled code in a folder of this user's own (mode 700), keyed by its text.
        bytecode_cache=jinja2.FileSystemBytecodeCache(),
    )
    env.filters["code"] = code
    env.filters["cell"] = cell
    env.filters["text_block"] = block
    return env


# How vaultd's block markers start ("<!-- vaultd:"): no line of a request may start so.
_MARKER = BLOCK_BEGIN.partition(":")[0] + ":"


def render_template(name: str, **values: Any) -> str:
    return _environment().get_template(name).render(**values)


@dataclass(frozen=True)
class Destination:
    where: str
    what: str


def destinations(action: Action) -> list[Destination]:
    """Given an action, return, per connector call, where it goes and what it does there
    (Markdown: the values in it are quoted)."""
    found = []
    for target in targets(action):
        if isinstance(action, SocialPost):
            found.append(Destination(_platform_where(target), _social_what(action)))
        elif isinstance(action, OdooInvoice):
            partner = action.partner or f"partner #{action.partner_id}"
            found.append(
                Destination(
                    odoo_location(),
                    f"create and post a customer invoice to {code(partner)} "
                    f"({len(action.lines)} line{'s' if len(action.lines) != 1 else ''})",
                )
            )
        elif isinstance(action, CodeTask):
            found.append(
                Destination(
                    f"git repo {code(action.repo)}",
                    f"cherry-pick the commits below onto branch {code(action.target)}, "
                    "each with the trailer `Vaultd-Task`",
                )
            )
        elif isinstance(action, OdooPayment):
            found.append(
                Destination(
                    odoo_location(), f"register a payment against invoice {code(action.invoice)}"
                )
            )
    return found


def _platform_where(platform: str) -> str:
    names = {
        "facebook": ("Facebook page", "FACEBOOK_PAGE_ID"),
        "instagram": ("Instagram account", "INSTAGRAM_ACCOUNT_ID"),
        "twitter": ("X (Twitter) account", "TWITTER_ACCESS_TOKEN"),
    }
    label, variable = names[platform]
    if platform == "twitter":
        return label if os.environ.get(variable) else f"{label} (not configured)"
    account = os.environ.get(variable)
    return f"{label} {code(account)}" if account else f"{label} (not configured: {variable} unset)"


def _social_what(post: SocialPost) -> str:
    if post.kind == "reply":
        return f"publish a public reply to {code(post.in_reply_to)}"
    if post.kind == "dm":
        return f"send a direct message to {code(post.recipient)}"
    when = f" at {post.scheduled_for.isoformat()}" if post.scheduled_for else " now"
    return f"publish a post{when}"


def render_request(
    *,
    task_id: str,
    action: Action,
    decision: Decision,
    payload_hash: str,
    expires_at: datetime,
    notice: str | None = None,
    cost: Decimal | None = None,
    hints: Hints | None = None,
    changed: Changed | None = None,
    patch: PatchView | None = None,
) -> str:
    """Return the Markdown of an approval request for one action.

    `hints` names vaultd, the vault and the state directory in the commands it suggests.
    The same arguments always give the same text. Raise ValueError if a line of it would
    read as one of vaultd's block markers (a template that puts a value at a line's start).
    """
    amount = action.total()
    hints = hints or Hints("vaultd", "VAULT")
    text = render_template(
        "approval_request.md.j2",
        task_id=task_id,
        action=action,
        payload=action.payload(),
        decision=decision,
        destinations=destinations(action),
        amount=f"{amount:,.2f} {decision.currency}" if amount is not None else None,
        payload_hash=payload_hash,
        expires_at=expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        notice=notice,
        changed=changed,
        patch=patch,
        cost=f"{cost:,.2f} USD" if cost is not None else None,
        approve_command=hints.command("approve", task_id),
        reject_command=hints.command("reject", f'{task_id} --reason "..."'),
    )
    if any(line.startswith(_MARKER) for line in text.splitlines()):
        raise ValueError("the approval request would contain a line read as a vaultd marker")
    return text
