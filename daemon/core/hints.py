"""The commands vaultd suggests to a person (in a request note, `status`, an error).

Every suggested command must work as printed when pasted into a shell in the folder that
holds the vault: the folder where `make run` ran, with `./vault` in it. So it names the
vaultd that is running (`vaultd` only when that is what PATH finds), the vault, and the
state directory when it is not the default one.

The words depend only on where vaultd, the vault and the state directory are, never on
the working directory of the process that prints them: a request note's block is rendered
again to check that it was not edited, and must come out the same from any daemon on this
machine.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


def vaultd_program() -> Path:
    """Return the path of the `vaultd` command that runs this process.

    Under `python -m daemon` that is the `vaultd` beside the interpreter, where the package
    installed it; failing that, the interpreter itself (the caller adds `-m daemon`).
    """
    argv0 = Path(sys.argv[0])
    if argv0.name == "vaultd" and argv0.exists():
        return argv0.absolute()
    beside = Path(sys.executable).parent / "vaultd"
    if beside.exists():
        return beside.absolute()
    return Path(sys.executable).absolute()


@dataclass(frozen=True)
class Hints:
    """How to call vaultd on one vault, as shell words."""

    program: str
    vault: str
    state: str | None = None

    @classmethod
    def for_vault(
        cls, vault_root: Path, state_dir: Path | None = None, *, program: Path | None = None
    ) -> Hints:
        """Given a vault (and the state directory if it is not the default), return the
        words that call vaultd on it from the folder that holds the vault."""
        program = program or vaultd_program()
        home = vault_root.absolute().parent
        found = shutil.which("vaultd")
        if found and Path(found).resolve() == program.resolve():
            words = "vaultd"
        else:
            words = shlex.quote(_from(home, program.absolute()))
            if program.name != "vaultd":
                words += " -m daemon"
        return cls(
            words,
            shlex.quote(_from(home, vault_root.absolute())),
            shlex.quote(_from(home, state_dir.absolute())) if state_dir else None,
        )

    def command(self, verb: str, tail: str = "", *, ledger: bool = True) -> str:
        """Return `vaultd VERB --vault V [--state-dir S] TAIL`, ready to paste; `tail` is
        shell text already (an id, `--reason "..."`). `ledger=False` for a command that
        does not read the state directory (and so takes no --state-dir)."""
        words = [self.program, verb, "--vault", self.vault]
        if self.state and ledger:
            words += ["--state-dir", self.state]
        return " ".join([*words, tail] if tail else words)


def _from(home: Path, path: Path) -> str:
    """Return `path` as typed in `home`: relative below it, absolute elsewhere."""
    try:
        relative = path.relative_to(home)
    except ValueError:
        return str(path)
    text = relative.as_posix()
    return text if "/" in text or path.name != "vaultd" else f"./{text}"
