"""The actions a task file can ask for: one pydantic model per `type`.

A task file's frontmatter minus vaultd's own keys (see `notes.RESERVED_KEYS`) must validate
as exactly one of these models. Unknown keys are errors (`extra="forbid"`), so a typo never
silently changes what runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon.core.errors import ValidationFailed

Platform = Literal["facebook", "instagram", "twitter"]

# Longest text each platform accepts; checked up front so a human approves what can be sent.
TEXT_LIMITS: dict[str, int] = {"twitter": 280, "instagram": 2200, "facebook": 63206}
# X appends the link to the tweet's text and counts any link as this many characters.
TWITTER_LINK_LENGTH = 23
# What an id a post, reply or DM goes to looks like on each platform (ASCII digits only:
# `\d` would take other scripts' digits too). A Graph comment id is "<post>_<comment>".
_GRAPH_ID = (re.compile(r"[0-9]{1,30}(?:_[0-9]{1,30})?"), "a Graph id (digits, or digits_digits)")
_X_ID = (re.compile(r"[0-9]{1,30}"), "an X id (digits only)")
ID_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "facebook": _GRAPH_ID,
    "instagram": _GRAPH_ID,
    "twitter": _X_ID,
}


def _fail_all(problems: list[str]) -> None:
    """Raise one error carrying every cross-field problem, one per line (see `_problems`)."""
    if problems:
        raise ValueError("\n".join(problems))


def _id_problems(name: str, value: str | None, platforms: Sequence[str]) -> list[str]:
    """Given an id field, its value and the platforms it goes to, return one problem for each
    id format it does not fit (naming the platforms that need it); none if it fits all.

    An empty value is left to the "is required" rule.
    """
    if not value:
        return []
    misfits: dict[str, list[str]] = {}
    for platform in platforms:
        pattern, description = ID_FORMATS[platform]
        if not pattern.fullmatch(value):
            misfits.setdefault(description, []).append(platform)
    return [
        f"{name} must be {description} to go to {', '.join(names)}"
        for description, names in misfits.items()
    ]


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    type: str

    def payload(self) -> dict[str, Any]:
        """Return the action as plain JSON data: what is hashed, shown and sent."""
        return self.model_dump(mode="json", exclude_none=True)

    def payload_hash(self) -> str:
        """Return "sha256:<hex>" of the canonical JSON payload."""
        canonical = json.dumps(self.payload(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def total(self) -> Decimal | None:
        """Return the money this action moves, or None if it moves none."""
        return None


class SocialPost(Action):
    type: Literal["social_post"]
    platforms: list[Platform] = Field(min_length=1)
    kind: Literal["post", "reply", "dm"] = "post"
    text: str = Field(min_length=1)
    link: str | None = None
    image_url: str | None = None
    in_reply_to: str | None = None
    recipient: str | None = None
    scheduled_for: dt.datetime | None = None

    _check_link = field_validator("link", "image_url")(_http_url)

    @field_validator("in_reply_to", "recipient", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # Post and user ids are numbers to YAML when written unquoted: take them as text.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("platforms")
    @classmethod
    def _unique_platforms(cls, platforms: list[str]) -> list[str]:
        if len(set(platforms)) != len(platforms):
            raise ValueError("lists a platform twice")
        return platforms

    @field_validator("scheduled_for")
    @classmethod
    def _aware(cls, when: dt.datetime | None) -> dt.datetime | None:
        if when is not None and when.tzinfo is None:
            raise ValueError("needs a time zone, for example 2026-12-01T09:00:00Z")
        return when

    @model_validator(mode="after")
    def _platform_rules(self) -> SocialPost:
        problems = []
        if "instagram" in self.platforms and not self.image_url:
            problems.append("image_url is required when instagram is a platform")
        if self.kind == "reply" and not self.in_reply_to:
            problems.append("in_reply_to is required when kind is reply")
        if self.kind == "dm" and not self.recipient:
            problems.append("recipient is required when kind is dm")
        # An id is pasted into the service's URL path: it must be an id of every platform.
        problems += _id_problems("in_reply_to", self.in_reply_to, self.platforms)
        problems += _id_problems("recipient", self.recipient, self.platforms)
        for platform in self.platforms:
            length, counted = len(self.text), "characters"
            if platform == "twitter" and self.link and self.kind != "dm":
                length += 1 + TWITTER_LINK_LENGTH
                counted = f"characters with the link (X counts a link as {TWITTER_LINK_LENGTH})"
            if length > TEXT_LIMITS[platform]:
                problems.append(
                    f"text is {length} {counted}; {platform} allows {TEXT_LIMITS[platform]}"
                )
        _fail_all(problems)
        return self


class InvoiceLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    product: str = Field(min_length=1)
    quantity: Decimal = Field(gt=0)
    price_unit: Decimal = Field(ge=0)
    description: str | None = None

    def subtotal(self) -> Decimal:
        return self.quantity * self.price_unit


class OdooInvoice(Action):
    type: Literal["odoo_invoice"]
    partner: str | None = Field(default=None, min_length=1)
    partner_id: int | None = Field(default=None, gt=0)
    lines: list[InvoiceLine] = Field(min_length=1)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    invoice_date: dt.date | None = None
    due_date: dt.date | None = None
    recurring: bool = False

    @model_validator(mode="after")
    def _one_partner(self) -> OdooInvoice:
        problems = []
        if (self.partner is None) == (self.partner_id is None):
            problems.append("partner: give exactly one of partner (a name) or partner_id")
        if self.invoice_date and self.due_date and self.due_date < self.invoice_date:
            problems.append("due_date is before invoice_date")
        _fail_all(problems)
        return self

    def total(self) -> Decimal:
        return sum((line.subtotal() for line in self.lines), Decimal(0))


class OdooPayment(Action):
    type: Literal["odoo_payment"]
    invoice: Annotated[str, Field(min_length=1)] | Annotated[int, Field(gt=0)]
    amount: Decimal = Field(gt=0)
    date: dt.date | None = None
    journal: str | None = None
    partner: str | None = None

    def total(self) -> Decimal:
        return self.amount


# A repo is named, never given as a path: a name of the config's `[code.repos]`.
_REPO_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
# A branch or commit as a task file may name it: never an option ("-x", "--force"), never a
# range or a reflog expression; git checks the rest (check-ref-format, rev-parse).
_REV = r"^[A-Za-z0-9_][A-Za-z0-9_./+-]{0,199}$"


class ChangedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    added: int | None = None  # None: a binary file
    deleted: int | None = None


class Prepared(BaseModel):
    """What vaultd made of a code task before asking (daemon/connectors/code_prepare.py): the
    commits and the diff a person approves. Stamped into the note as `code`; part of the
    payload, so the approval binds the head and the diff hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    branch: str
    base_sha: str = Field(pattern=r"^[0-9a-f]{40,64}$")
    head_sha: str = Field(pattern=r"^[0-9a-f]{40,64}$")
    diff_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    diff_bytes: int = Field(ge=0)
    files: list[ChangedFile] = Field(default_factory=list)
    # The checks' exit status: 0 passed, -1 killed at the timeout, None: none were asked for.
    # (No key may say "pass": the audit redactor would take it for a password.)
    checks_exit: int | None = None


class CodeTask(Action):
    """A change to a git repo, made by an agent in a worktree of its own and landed on
    `target` only as the exact diff a person approved (design §7, issue 16)."""

    type: Literal["code_task"]
    repo: str = Field(pattern=_REPO_NAME)
    base: str = Field(pattern=_REV)
    target: str = Field(pattern=_REV)
    task: str = Field(min_length=1, max_length=20000)
    # An argument list, run without a shell in the worktree (a string would need one).
    checks: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    prepared: Prepared | None = None

    @field_validator("base", "target")
    @classmethod
    def _one_revision(cls, value: str) -> str:
        if ".." in value or value.endswith((".", "/", ".lock")):
            raise ValueError("must name one branch or commit, not a range or a partial name")
        return value


AnyAction = Annotated[
    SocialPost | OdooInvoice | OdooPayment | CodeTask, Field(discriminator="type")
]
ACTION_TYPES: tuple[str, ...] = ("social_post", "odoo_invoice", "odoo_payment", "code_task")
_FIELD_NAMES = {
    name
    for model in (SocialPost, OdooInvoice, OdooPayment, CodeTask)
    for name in model.model_fields
}
_MEMBER_TAG = re.compile(r"^(constrained-)?(str|int)$")
_adapter: TypeAdapter[SocialPost | OdooInvoice | OdooPayment | CodeTask] = TypeAdapter(AnyAction)


def parse_action(
    data: dict[str, Any], *, prepared: Any = None
) -> SocialPost | OdooInvoice | OdooPayment | CodeTask:
    """Given frontmatter without vaultd's keys, return the action. `prepared` is a code task's
    `code` stamp (`Prepared`), which only vaultd writes.

    Raise ValidationFailed listing every problem as (field, message).
    """
    if "prepared" in data:
        raise ValidationFailed([("prepared", "written by vaultd, never by a task file")])
    if prepared is not None and data.get("type") == "code_task":
        data = {**data, "prepared": prepared}
    if "type" not in data:
        raise ValidationFailed([("type", f"missing; expected one of {', '.join(ACTION_TYPES)}")])
    if data["type"] not in ACTION_TYPES:
        raise ValidationFailed(
            [
                (
                    "type",
                    f'unknown action "{data["type"]}"; expected one of {", ".join(ACTION_TYPES)}',
                )
            ]
        )
    try:
        return _adapter.validate_python(data)
    except ValidationError as error:
        raise ValidationFailed(_problems(error)) from None


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors(include_url=False):
        # The first location element is the union tag ("social_post"); drop it, and the
        # tags of a field's own union ("invoice.constrained-int") too.
        location = [str(p) for p in item["loc"][1:] if not _MEMBER_TAG.match(str(p))]
        if item["type"] == "extra_forbidden":
            messages = ["unknown field (not part of this action type)"]
        elif item["type"] == "missing":
            messages = ["missing"]
        else:
            # Cross-field rules raise from the model, without a location, one problem a
            # line; each starts with the field it is about ("image_url is required ...").
            messages = item["msg"].removeprefix("Value error, ").split("\n")
        for text in messages:
            first_word = text.split(" ", 1)[0].rstrip(":")
            field = ".".join(location) or (first_word if first_word in _FIELD_NAMES else "(file)")
            problems.append((field, text.removeprefix(f"{field}: ") if not location else text))
    return problems
