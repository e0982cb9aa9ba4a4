"""Helpers for the code-task tests: real git repos under tmp_path, a fake agent that edits
files (or misbehaves on purpose), and the config that allows them. Never the user's git
config: every git here runs with a throwaway HOME and an identity in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}

# The fake agent: what it does is said by the first word of its spec (the task text).
AGENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    spec = Path(sys.argv[1]).read_text()
    word, _, rest = spec.strip().partition(" ")
    if word == "HANG":
        time.sleep(60)
    elif word == "FAIL":
        print("agent gives up"); sys.exit(3)
    elif word == "NOTHING":
        pass
    elif word == "OUTSIDE":
        Path(rest.strip(), "stray.txt").write_text("written outside the worktree\\n")
        Path("greeting.txt").write_text("hello\\n")
    elif word == "ENV":
        Path("env.txt").write_text("\\n".join(f"{k}={v}" for k, v in os.environ.items()))
    elif word == "COMMIT":
        Path("greeting.txt").write_text("hello\\n")
        subprocess.run(["git", "add", "greeting.txt"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", "Add greeting"], check=True)
        Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    elif word == "LINGER":
        Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
        later = "import time, pathlib; time.sleep(0.5); pathlib.Path('late.txt').write_text('x')"
        subprocess.Popen([sys.executable, "-c", later])
    elif word == "HOOK":
        common = subprocess.run(["git", "rev-parse", "--git-common-dir"], capture_output=True,
                                text=True, check=True).stdout.strip()
        hooks = Path(common, "hooks")
        hooks.mkdir(exist_ok=True)
        for name in ("pre-commit", "post-commit", "post-rewrite", "prepare-commit-msg"):
            hook = hooks / name
            hook.write_text(f"#!/bin/sh\\necho ran >> {rest.strip()}\\n")
            hook.chmod(0o755)
        Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    elif word == "CONFIG":
        with open(rest.strip(), "a") as config:
            config.write("[core]\\n\\tfsmonitor = touch /tmp/never-run-by-vaultd\\n")
        Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    elif word == "SLOW":
        Path(os.environ.get("TMPDIR", "/tmp"), "vaultd-agent-" + rest.split()[1]).write_text(
            str(os.getpid())) if len(rest.split()) > 1 else None
        time.sleep(float(rest.split()[0]))
        Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    elif word == "GATE":
        gate = Path(rest.strip())
        for _ in range(600):
            if gate.exists():
                break
            time.sleep(0.1)
        Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    elif word == "BIG":
        Path("big.txt").write_text("x" * 4000 + "\\n")
    else:
        Path("README.md").write_text("# Demo\\nchanged by the agent\\n")
    """
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repo(path: Path) -> Path:
    """Make a repo with one commit on `main` (checked out) and return it."""
    path.mkdir(parents=True)
    git(path, "-c", "init.defaultBranch=main", "init", "-q")
    (path / "README.md").write_text("# Demo\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "Initial commit")
    return path


def write_config(tmp_path: Path, repo: Path, *, timeout_s: float = 20, **extra: str) -> Path:
    agent = tmp_path / "fake agent.py"
    agent.write_text(AGENT)
    lines = [
        "[code]",
        f'agent_command = ["{sys.executable}", "{agent}", "{{spec}}"]',
        f"timeout_s = {timeout_s}",
        *(f"{key} = {value}" for key, value in extra.items()),
        "[code.repos]",
        f'demo = "{repo}"',
        # The checks the tests' tasks ask for: a task may only name one the config allows.
        "[code.checks]",
        'demo = [["git", "diff", "--quiet", "HEAD"], ["git", "diff", "--quiet"],'
        ' ["git", "diff", "--quiet", "HEAD~1"]]',
    ]
    config = tmp_path / "vaultd.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def code_task(task: str = "Change the README", **fields: object) -> dict[str, object]:
    return {
        "type": "code_task",
        "repo": "demo",
        "base": "main",
        "target": "main",
        "task": task,
        **fields,
    }


def trailers(repo: Path, branch: str = "main") -> list[str]:
    """Return the Vaultd-Task trailer values of every commit of a branch."""
    out = git(repo, "log", "--format=%(trailers:key=Vaultd-Task,valueonly)", branch)
    return [line for line in out.splitlines() if line.strip()]


def task_worktree(repo: Path, state: Path, task_id: str, *, commits: int = 1) -> Path:
    """Set up what preparing a code task leaves (its worktree on `vaultd/<id>` with
    `commits` commits of the agent, and its artifacts with `inputs.json`), without running
    an agent; return the worktree."""
    worktree = state / "worktrees" / task_id
    worktree.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "-q", "-b", f"vaultd/{task_id}", "--", str(worktree), "main")
    artifacts = state / "code" / task_id
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "inputs.json").write_text('{"repo": "demo"}')
    (artifacts / "agent.log").write_text("what the agent said\n")
    for number in range(commits):
        (worktree / f"work-{number}.txt").write_text(f"work {number}\n" * 2000)
        git(worktree, "add", "--all")
        git(worktree, "commit", "-q", "-m", f"Work {number} of {task_id}")
    return worktree
