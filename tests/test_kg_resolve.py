"""Links resolve as Obsidian resolves them, and never by a guess: exact path, the same path
in another case, or a file name unique in the vault. Anything else stays unresolved, and
says why."""

from __future__ import annotations

import pytest

from daemon.agents.kg.resolve import AMBIGUOUS, INVALID, MISSING, RESOLVED, Resolver

VAULT = [
    "Clients/Acme Corp.md",
    "Plans/Q1.md",
    "Archive/Q1.md",
    "Done/invoice.md",
    "attachments/chart.png",
    "Notes/v1.2 release.md",
    "Café.md",
]


@pytest.fixture
def resolver() -> Resolver:
    return Resolver(VAULT)


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("Clients/Acme Corp", "Clients/Acme Corp.md"),
        ("Clients/Acme Corp.md", "Clients/Acme Corp.md"),
        ("acme corp", "Clients/Acme Corp.md"),  # a unique name, in any case
        ("CLIENTS/acme CORP", "Clients/Acme Corp.md"),
        ("Plans/Q1", "Plans/Q1.md"),  # a path chooses among names that are not unique
        ("chart.png", "attachments/chart.png"),
        ("v1.2 release", "Notes/v1.2 release.md"),
        ("Cafe\u0301", "Café.md"),  # NFD, as macOS writes names, is the same name
        ("./Plans/Q1", "Plans/Q1.md"),
    ],
)
def test_a_link_resolves_by_exact_path_or_unique_name(resolver: Resolver, target: str, path: str):
    assert resolver.resolve(target).path == path
    assert resolver.resolve(target).status == RESOLVED


def test_a_name_two_notes_share_stays_unresolved_and_names_both(resolver: Resolver):
    found = resolver.resolve("Q1")
    assert (found.status, found.path) == (AMBIGUOUS, None)
    assert found.candidates == ("Archive/Q1.md", "Plans/Q1.md")
    assert "2 notes have this name" in found.reason


@pytest.mark.parametrize(
    "target",
    ["Acme", "Acme Cor", "Acme Corp 2", "Clint/Acme Corp", "Other/Acme Corp", "Q"],
)
def test_nothing_is_matched_fuzzily(resolver: Resolver, target: str):
    assert resolver.resolve(target).status == MISSING


def test_a_path_with_a_folder_never_falls_back_to_a_name_elsewhere(resolver: Resolver):
    # `Clients/invoice` is not `Done/invoice.md`: the folder in the link is part of its name
    assert resolver.resolve("Clients/invoice").status == MISSING


@pytest.mark.parametrize(
    "target",
    ["../secrets", "../../etc/passwd", "Plans/../../outside", "/etc/passwd", "..\\..\\x"],
)
def test_a_link_escaping_the_vault_is_invalid_not_resolved(resolver: Resolver, target: str):
    found = Resolver([*VAULT, "secrets.md", "etc/passwd.md", "outside.md", "x.md"]).resolve(target)
    assert (found.status, found.path) == (INVALID, None)
    assert found.reason


def test_a_missing_note_resolves_once_it_exists():
    assert Resolver(VAULT).resolve("New Idea").status == MISSING
    assert Resolver([*VAULT, "Inbox/New Idea.md"]).resolve("New Idea").path == "Inbox/New Idea.md"
