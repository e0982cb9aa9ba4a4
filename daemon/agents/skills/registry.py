"""Finding skills: the built-in ones, plus the folders named in `[skills] dirs`.

A skill folder holds `skill.json` and `execute.py`. One that is not valid in every part is
reported (by `vaultd check` and `vaultd skills list`) and skipped, never half-loaded. Skill
folders must lie outside the vault: code in a synced vault would run whatever anyone syncs
into it.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from daemon.agents.skills.manifest import BUILTIN, SkillManifest
from daemon.core.config import SkillsConfig
from daemon.core.vault import inside

BUILTIN_DIR = Path(__file__).parent / "builtin"

# The skill whose guards (required_groups, approval_required, guardrails) a task of each
# action type obeys when an agent writes it itself, whichever door it comes through.
ACTION_SKILLS = {
    "social_post": "post-social-media",
    "odoo_invoice": "create-invoice",
    "odoo_payment": "register-payment",
}


@dataclass(frozen=True)
class Skill:
    manifest: SkillManifest
    folder: Path
    builtin: bool

    @property
    def key(self) -> str:
        return self.manifest.name

    @property
    def script(self) -> Path:
        return self.folder / "execute.py"


@dataclass(frozen=True)
class Problem:
    """A skill folder that was skipped, and why."""

    folder: Path
    message: str

    def __str__(self) -> str:
        return f"{self.folder}: {self.message}"


@dataclass
class Registry:
    skills: dict[str, Skill] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def get(self, key: str) -> Skill | None:
        return self.skills.get(key)

    def listed(self) -> list[Skill]:
        return sorted(self.skills.values(), key=lambda skill: skill.key)

    def for_action(self, action_type: str) -> tuple[str | None, Skill | None]:
        """Given a task's action type, return the key of the skill that guards it
        (ACTION_SKILLS) and that skill; the skill is None if it is missing or was skipped
        as invalid, and both are None for a type no skill guards."""
        key = ACTION_SKILLS.get(action_type)
        return key, self.skills.get(key) if key is not None else None


def load_registry(config: SkillsConfig, *, vault: Path | None = None) -> Registry:
    """Return the built-in skills and those in the configured folders, with every problem."""
    registry = Registry()
    roots = [(BUILTIN_DIR, True)] + [(Path(d).expanduser(), False) for d in config.dirs]
    for root, builtin in roots:
        if vault is not None and inside(root, vault):
            registry.problems.append(
                Problem(root, "skill folders must lie outside the vault; skipped")
            )
            continue
        if not root.is_dir():
            registry.problems.append(Problem(root, "no such folder"))
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name.startswith((".", "_")):
                continue
            try:
                skill = load_skill(folder, builtin=builtin)
            except SkillInvalid as error:
                registry.problems.append(Problem(folder, str(error)))
                continue
            earlier = registry.skills.get(skill.key)
            if earlier is not None:
                registry.problems.append(
                    Problem(folder, f"skill {skill.key!r} is already defined in {earlier.folder}")
                )
                continue
            registry.skills[skill.key] = skill
    return registry


class SkillInvalid(Exception):
    pass


def load_skill(folder: Path, *, builtin: bool = False) -> Skill:
    """Given a skill folder, return the skill. Raise SkillInvalid naming every problem."""
    manifest_path = folder / "skill.json"
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SkillInvalid("no skill.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SkillInvalid(f"skill.json is not valid JSON: {error}") from None
    try:
        manifest = SkillManifest.model_validate(data, context={BUILTIN: builtin})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'skill.json'}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise SkillInvalid(f"skill.json: {problems}") from None
    script = folder / "execute.py"
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    except FileNotFoundError:
        raise SkillInvalid("no execute.py") from None
    except (SyntaxError, UnicodeDecodeError) as error:
        raise SkillInvalid(f"execute.py does not compile: {error}") from None
    if not any(isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body):
        raise SkillInvalid("execute.py defines no top-level function run(inputs, tools)")
    return Skill(manifest, folder.resolve(), builtin)
