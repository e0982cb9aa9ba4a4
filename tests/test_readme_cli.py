"""README and CLI agree: every command, flag and environment variable vaultd knows is in the
README, and every one the README names exists."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from daemon.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Variables only the test suite reads: documented under Development, not settings.
TEST_ONLY = {"VAULTD_NIGHTLY", "VAULTD_SEED", "VAULTD_TEST_FRESH"}


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Yield (command path, parser) for vaultd and every subcommand, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


COMMANDS = dict(commands(build_parser()))


def test_every_command_and_flag_in_the_help_is_in_the_readme():
    missing = []
    for path, parser in COMMANDS.items():
        if path and f"vaultd {' '.join(path)}" not in README:
            missing.append(f"vaultd {' '.join(path)}")
        missing += [f"{' '.join(path) or 'vaultd'} {f}" for f in flags(parser) if f not in README]
    assert not missing, f"in --help but not in README.md: {missing}"


def readme_invocations() -> Iterator[tuple[str, list[str]]]:
    """Yield (line, words after `vaultd`) for every vaultd command line the README shows."""
    for line in README.splitlines():
        for found in re.finditer(r"(?:^|[\s`(/])vaultd((?: +[^\s`|;&)>#]+)+)", line):
            yield line, found.group(1).split()


def test_every_command_and_flag_the_readme_names_exists():
    unknown = []
    for line, words in readme_invocations():
        path: tuple[str, ...] = ()
        for word in words:
            if word.startswith("-"):
                break
            if (*path, word) not in COMMANDS:
                break
            path = (*path, word)
        known = flags(COMMANDS[path]) | flags(COMMANDS[()])
        if len(path) == 1 and any(len(p) == 2 and p[0] == path[0] for p in COMMANDS):
            # `vaultd runs … ID [--json]`: a synopsis of several subcommands' flags.
            known |= {f for p, sub in COMMANDS.items() if p[:1] == path for f in flags(sub)}
        for word in words:
            flag = word.strip("[]().,'\"").split("=")[0]
            if flag.startswith("--") and flag not in known:
                unknown.append(f"{flag} (in: {line.strip()})")
    assert not unknown, f"named in README.md but vaultd has no such flag: {unknown}"


def environment_variables_in_the_code() -> set[str]:
    found = set()
    for path in (ROOT / "daemon").rglob("*.py"):
        found |= set(re.findall(r"\bVAULTD_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    return found


def test_every_environment_variable_vaultd_reads_is_in_the_readme():
    missing = sorted(v for v in environment_variables_in_the_code() if v not in README)
    assert not missing, f"read by vaultd but not in README.md: {missing}"


def test_every_environment_variable_the_readme_names_is_read_by_vaultd_or_the_tests():
    named = set(re.findall(r"\bVAULTD_[A-Z_]+\b", README))
    unknown = sorted(named - environment_variables_in_the_code() - TEST_ONLY)
    assert not unknown, f"named in README.md but read by nothing: {unknown}"
