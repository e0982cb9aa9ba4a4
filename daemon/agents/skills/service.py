"""Wiring: the registry and the run service of one vault, with the readers of its tools."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from daemon.agents.skills.registry import Registry, load_registry
from daemon.agents.skills.tasks import SkillRuns
from daemon.agents.webhooks import events
from daemon.core.schedule_config import zone
from daemon.core.weeks import IsoWeek
from daemon.reports import briefing
from daemon.reports.status import build_snapshot

if TYPE_CHECKING:
    from daemon.lifecycle.app import App


def open_runs(app: App, registry: Registry | None = None) -> SkillRuns:
    """Return the run service of an app, with the readers its non-destructive tools use."""
    registry = registry or load_registry(app.config.skills, vault=app.vault.root)

    def generate_briefing(args: dict[str, Any]) -> dict[str, Any]:
        week = args.get("week")
        if week is None:
            now, tz = datetime.now(UTC), zone(app.config.schedule.timezone)
            chosen = briefing.last_completed_week(now, tz)
        else:
            chosen = IsoWeek.parse(str(week))
        path = briefing.write_briefing(app, chosen)
        return {"week": str(chosen), "path": app.vault.relative(path)}

    def vault_status(_args: dict[str, Any]) -> dict[str, Any]:
        snapshot = build_snapshot(app.vault, app.ledger, listed=0)
        return {
            "counts": snapshot.counts,
            "waiting_for_approval": snapshot.pending_more,
            "failed": snapshot.problems_more,
        }

    readers = {"briefing.generate": generate_briefing, "vault.status": vault_status}
    runs = SkillRuns(registry, app.vault, app.ledger, app.audit, readers=readers)
    # A run's change of state writes its webhook events (daemon/agents/webhooks/events.py).
    events.install(app.ledger)
    return runs
