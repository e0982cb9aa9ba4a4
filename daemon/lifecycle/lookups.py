"""The lookups after a lost answer (design §3, "At most once"): when a call's answer was lost
(a timeout, a dropped connection) and a lookup of its marker cannot tell whether it
happened, vaultd looks again on a schedule (`LookupSchedule`: exponential backoff with
jitter, within a budget, 2 minutes by default) before it leaves the call to a person as
"outcome unknown".

The schedule of each marker is kept in the ledger's progress table (under LOOKING), so a
deferred look survives a restart: `next_lookup` says when it is due, `start_looking` plans
one after a lost answer, `look_again` plans the next after a lookup that could not settle it
(or gives up), and `stop_looking` drops it once the call is settled. The executor
(daemon/lifecycle/execution.py) makes the calls and the lookups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from daemon.core import ledger
from daemon.core.errors import ConfigError
from daemon.core.ledger import Ledger

# Where the lookup schedule of a marker is kept in the ledger's progress table.
LOOKING = "vaultd.lookups"
SCHEDULE_VARIABLE = "VAULTD_LOOKUP_SCHEDULE"


@dataclass(frozen=True)
class LookupSchedule:
    """How long vaultd keeps looking up a call whose outcome a lookup cannot tell.

    The first lookup is made at once; the next after about `first` seconds, each wait then
    doubling (plus up to `first` seconds of jitter) up to `longest`; once `budget` seconds
    have passed since the first, a lookup that still cannot tell leaves the call to a person.
    The default (2, 30, 120) makes about eight lookups in two minutes.
    """

    first: float = 2.0
    longest: float = 30.0
    budget: float = 120.0

    @classmethod
    def parse(cls, text: str | None) -> LookupSchedule:
        """Given VAULTD_LOOKUP_SCHEDULE ("first,longest,budget" in seconds, e.g. "2,30,120";
        unset or empty: the default), return the schedule. Raise ConfigError if it is not
        three numbers with 0 < first <= longest and budget >= 0 (0: never look again)."""
        if not text or not text.strip():
            return cls()
        try:
            first, longest, budget = (float(part) for part in text.split(","))
        except ValueError:
            first = longest = budget = -1.0
        if not (0 < first <= longest < 3600 and 0 <= budget <= 86400):
            raise ConfigError(
                f"{SCHEDULE_VARIABLE}={text!r}: expected first,longest,budget in seconds "
                "(such as 2,30,120), with 0 < first <= longest and budget >= 0"
            )
        return cls(first, longest, budget)

    @classmethod
    def from_environment(cls) -> LookupSchedule:
        """Return the schedule VAULTD_LOOKUP_SCHEDULE sets (the default when unset); raise
        ConfigError if it is malformed."""
        return cls.parse(os.environ.get(SCHEDULE_VARIABLE))

    def wait(self, tries: int) -> float:
        """Given how many lookups were made so far (1 or more), return the seconds to wait
        before the next one: tenacity's exponential backoff with jitter, capped at `longest`."""
        strategy = wait_exponential_jitter(
            multiplier=self.first, max=self.longest, jitter=self.first
        )
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = max(1, tries)
        return float(strategy(state))


@dataclass(frozen=True)
class Waiting:
    """A marker whose next lookup is not due yet: look again at `until`, not before."""

    reason: str
    until: datetime


def _schedule_of(ledger_: Ledger, marker: str) -> dict[str, Any]:
    """Given a marker, return its lookup schedule as kept (empty when none runs)."""
    record = ledger_.recall(marker).get(LOOKING)
    return record if isinstance(record, dict) else {}


def next_lookup(ledger_: Ledger, marker: str) -> Waiting | None:
    """Given a marker, return when its next lookup is due, or None if none is planned."""
    record = _schedule_of(ledger_, marker)
    if "until" not in record:
        return None
    return Waiting(str(record.get("reason", "")), datetime.fromisoformat(record["until"]))


def start_looking(ledger_: Ledger, marker: str, reason: str, now: datetime) -> None:
    """Plan a lookup now for a call whose answer was just lost; keep the schedule's start
    if one runs already (a second lost answer does not buy more time)."""
    record, at = _schedule_of(ledger_, marker), now.isoformat()
    since, tries = record.get("since", at), int(record.get("tries", 0))
    schedule = {"since": since, "tries": tries, "until": at, "reason": reason}
    ledger_.remember(marker, LOOKING, {**schedule, "lost": reason})


def stop_looking(ledger_: Ledger, marker: str) -> None:
    """Drop a marker's lookup schedule (kept as an empty record: the ledger has no delete)."""
    if _schedule_of(ledger_, marker):
        ledger_.remember(marker, LOOKING, {})


def look_again(
    ledger_: Ledger,
    marker: str,
    reason: str,
    *,
    now: datetime,
    lookups: LookupSchedule,
    lasting: bool = False,
) -> tuple[str, Any]:
    """Given a call a lookup could not settle, return (DEFERRED, (reason, when to look
    again)), or (UNKNOWN, reason) when asking again cannot tell (`lasting`) or the
    schedule's budget is spent: then a person decides, and a retry starts afresh."""
    record = _schedule_of(ledger_, marker)
    since = datetime.fromisoformat(record["since"]) if "since" in record else now
    tries = int(record.get("tries", 0)) + 1
    spent = (now - since).total_seconds()
    if lasting or spent >= lookups.budget:
        stop_looking(ledger_, marker)
        # For a person: what went wrong with the call, if its answer was lost, and why
        # no lookup could settle it.
        lost = f"{record['lost']}; " if record.get("lost") else ""
        if lasting:
            return ledger.UNKNOWN, f"{lost}{reason}"
        return ledger.UNKNOWN, f"{lost}{reason} (looked up {tries} times in {spent:.0f} s)"
    until = min(
        now + timedelta(seconds=lookups.wait(tries)),
        since + timedelta(seconds=lookups.budget),
    )
    note = f"{reason}; lookup {tries} could not settle it, so vaultd looks again"
    schedule = {"since": since.isoformat(), "tries": tries, "until": until.isoformat()}
    schedule["lost"] = record.get("lost")
    ledger_.remember(marker, LOOKING, {**schedule, "reason": note})
    return ledger.DEFERRED, (note, until)
