"""Configuration: a TOML file outside the vault, and where vaultd keeps its state.

The config holds the approval policy and the daemon's timings. It is deliberately not a
note in the vault: an agent that can write notes must not be able to raise the limits that
decide what it may do without asking.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon.core.code_config import CodeConfig
from daemon.core.costs import Prices
from daemon.core.errors import ConfigError
from daemon.core.limits import RateLimits
from daemon.core.policy import Policy
from daemon.core.schedule_config import Briefing, Logs, Schedule
from daemon.core.settings import Settings
from daemon.core.vault import inside
from daemon.core.webhook_config import WebhooksConfig

# The doors through which agents write task files themselves (daemon/core/origin.py): "mcp" is
# the MCP server's create_task_file; "api" a REST API that writes task files (it has no
# such endpoint today: its agents start skill runs, which their skill guards).
Door = Literal["mcp", "api"]
DOORS: tuple[Door, ...] = ("mcp", "api")


class BreakerConfig(BaseModel):
    """The `[breaker]` table of the config file."""

    model_config = ConfigDict(extra="forbid")

    fail_max: int = Field(default=5, ge=1)
    reset_seconds: float = Field(default=30, gt=0)
    success_threshold: int = Field(default=2, ge=1)


class PolicyConfig(Policy):
    """`[policy]`: the decision matrix (daemon/core/policy.py), and the doors whose tasks always
    need a person (applied by origin, daemon/core/origin.py)."""

    # A task an agent writes directly through one of these doors is never auto-approved.
    require_approval_from: list[Door] = Field(default_factory=lambda: list(DOORS))


class Timing(BaseModel):
    """The `[daemon]` table: the daemon's timings."""

    model_config = ConfigDict(extra="forbid")

    # A file is read only after its size, mtime and content held still this long, when no
    # event said it is complete: a write not closed yet, a file found by a scan, and every
    # file with --polling (network drives), which sees no closes.
    stability_ms: int = Field(default=300, ge=0)
    # A file closed after writing (inotify's IN_CLOSE_WRITE) is read after this much quiet
    # instead; a rename into a pipeline folder (atomic) is read at once. At most stability_ms.
    quiet_ms: int = Field(default=50, ge=0)
    # Full rescan of the pipeline folders, in case the file watcher missed something.
    rescan_seconds: float = Field(default=60, gt=0)
    # Dashboard.md is rewritten at most this often.
    dashboard_seconds: float = Field(default=2, ge=0)
    # How often each part of the running daemon (watcher, scheduler, API) is checked; one
    # that is down is restarted, up to 3 times, then reported in an alert note.
    health_seconds: float = Field(default=30, gt=0)
    # The executor rewrites the heartbeat of the vault's lease (`.vaultd/executor.json`) this
    # often. Only for people to read: no daemon takes a lease over because it is old.
    lease_heartbeat_seconds: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _quiet_within_the_window(self) -> Timing:
        # Set alone, stability_ms may go below the default quiet_ms: the queue takes the
        # smaller. Both set, a longer quiet than window is a mistake worth saying.
        if "quiet_ms" in self.model_fields_set and self.quiet_ms > self.stability_ms:
            raise ValueError(
                f"quiet_ms ({self.quiet_ms}) must not be longer than stability_ms "
                f"({self.stability_ms}): a closed file never waits longer than an open one"
            )
        return self


class SkillsConfig(BaseModel):
    """`[skills]`: where skills beyond the built-in ones live."""

    model_config = ConfigDict(extra="forbid")

    # Folders of skill folders. They must lie outside the vault: code in a synced vault
    # would run whatever anyone syncs into it.
    dirs: list[Path] = Field(default_factory=list)


class ApiConfig(BaseModel):
    """`[api]`: the REST API of `vaultd serve` (and `vaultd run --api`)."""

    model_config = ConfigDict(extra="forbid")

    # Loopback by default; another address needs --allow-remote (keys travel in clear).
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    # The one JWT algorithm accepted (HMAC); a token naming any other is refused.
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    # The environment variable (or --env-file line) holding the JWT secret; unset: no JWTs.
    jwt_secret_env: str = Field(default="VAULTD_JWT_SECRET", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # When set, a token must carry exactly this `aud` / `iss`.
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    @field_validator("jwt_secret_env")
    @classmethod
    def _a_name_the_redactor_knows(cls, name: str) -> str:
        if not Settings({name: "placeholder"}).secrets():
            raise ValueError(
                f"{name} does not look secret, so its value would not be redacted from the "
                "logs: use a name containing SECRET, TOKEN, PASSWORD or API_KEY"
            )
        return name


class Agents(BaseModel):
    """`[agents]`: the OS user the agents run as. When set, `vaultd check` lists every path
    that user could write or read but must not, and `vaultd run --live` refuses to start
    while there is one (`vaultd agents setup` sets them right)."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(
        default=None, min_length=1, max_length=32, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$"
    )


class QueueConfig(BaseModel):
    """`[queue]`: the workers of `vaultd run` that execute skill runs in the background.

    A skill names its channel in its manifest (`"channel": "odoo"`, default `default`); a
    channel runs at most its capacity of runs at once, across every worker process of the
    ledger (capacity 1: a sequential channel).
    """

    model_config = ConfigDict(extra="forbid")

    channels: dict[str, int] = Field(default_factory=lambda: {"default": 2})
    # A worker holds a run for this long, renewed every third of it while it works; a run
    # whose worker died is taken back once its lease runs out (at once if its process is
    # seen dead on this machine).
    lease_seconds: float = Field(default=30, ge=1, le=3600)
    # How often an idle worker looks for a run that is due.
    poll_seconds: float = Field(default=0.5, gt=0, le=60)
    # How many times a run that failed before it asked for anything is tried again.
    max_retries: int = Field(default=2, ge=0, le=100)
    # Seconds to wait before the next try, after N tries: {1 = 10, 5 = 60} waits 10 s
    # after tries 1 to 4 and 60 s from the 5th on.
    retry_pattern: dict[int, float] = Field(default_factory=lambda: {1: 10.0, 3: 60.0})

    @field_validator("channels")
    @classmethod
    def _capacities(cls, channels: dict[str, int]) -> dict[str, int]:
        problems = []
        for name, capacity in channels.items():
            if not re.fullmatch(CHANNEL, name):
                problems.append(f"{name!r}: a channel is 1-32 lowercase letters, digits, - or _")
            if not 1 <= capacity <= 64:
                problems.append(f"{name}: a capacity is from 1 to 64 runs at once")
        if "default" not in channels:
            problems.append("the channel `default` is required (skills use it by default)")
        if problems:
            raise ValueError("; ".join(problems))
        return channels

    @field_validator("retry_pattern")
    @classmethod
    def _pattern(cls, pattern: dict[int, float]) -> dict[int, float]:
        for tries, seconds in pattern.items():
            if tries < 1 or seconds < 0:
                raise ValueError(f"{tries} = {seconds}: tries from 1, seconds from 0")
        return dict(sorted(pattern.items()))


# A channel's name, in the config and in a skill's manifest.
CHANNEL = r"[a-z0-9][a-z0-9_-]{0,31}"


KgSource = Literal["vault", "ledger"]
KG_SOURCES: tuple[KgSource, ...] = ("vault", "ledger")


class KgConfig(BaseModel):
    """The knowledge graph (`vaultd kg`): the sources it is built from."""

    model_config = ConfigDict(extra="forbid")

    # "vault": notes, links, tags, frontmatter entities; "ledger": approvals, executions
    # and the runs that asked (daemon/agents/kg/ledger_source.py). Odoo is not a source yet.
    sources: list[KgSource] = Field(default_factory=lambda: list(KG_SOURCES))
    # How often `vaultd run` brings a built graph up to date (daemon/service/graph_keeper.py);
    # 0: never (only `vaultd kg rebuild` does).
    refresh_seconds: float = Field(default=10.0, ge=0)

    @field_validator("sources")
    @classmethod
    def _vault_first(cls, sources: list[str]) -> list[str]:
        if "vault" not in sources:
            raise ValueError('the vault is always a source: list "vault"')
        return sources


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    daemon: Timing = Field(default_factory=Timing)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    costs: Prices = Field(default_factory=Prices)
    schedule: Schedule = Field(default_factory=Schedule)
    briefing: Briefing = Field(default_factory=Briefing)
    logs: Logs = Field(default_factory=Logs)
    skills: SkillsConfig = Field(default_factory=SkillsConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    agents: Agents = Field(default_factory=Agents)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    kg: KgConfig = Field(default_factory=KgConfig)
    code: CodeConfig = Field(default_factory=CodeConfig)


def default_config_path() -> Path | None:
    """Return the config file to use when none is named: $VAULTD_CONFIG or the XDG one."""
    if os.environ.get("VAULTD_CONFIG"):
        return Path(os.environ["VAULTD_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = base / "vaultd" / "config.toml"
    return path if path.exists() else None


def load_config(path: Path | None) -> Config:
    """Given a TOML file (or None for the defaults), return the config.

    Raise ConfigError naming the file and every bad setting.
    """
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{path}: {'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in error.errors(include_url=False)
        ]
        raise ConfigError("\n".join(problems)) from None


def state_dir_for(vault: Path, override: str | Path | None = None) -> Path:
    """Return the state directory of a vault: the override, $VAULTD_STATE_DIR, or XDG.

    Raise ConfigError if it lies inside the vault: the vault may be synced to other
    machines, and the ledger must not travel with it.
    """
    chosen = override or os.environ.get("VAULTD_STATE_DIR")
    if chosen:
        state = Path(chosen).expanduser().resolve()
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        vault_id = hashlib.sha256(str(vault.resolve()).encode()).hexdigest()[:12]
        state = (base / "vaultd" / f"{vault.resolve().name}-{vault_id}").resolve()
    if inside(state, vault):
        raise ConfigError(f"{state}: the state directory must be outside the vault")
    return state
