"""The child side of a skill run: runs `execute.py` in its own process.

    python -I host.py /path/to/execute.py

It reads the inputs as one JSON line on stdin, calls `run(inputs, tools)`, and writes one
JSON line back with the result. Every `tools.call(name, **args)` is one request line to
vaultd and one answer line back; vaultd checks it, records it as a trace step, and routes
anything destructive through the approval lifecycle. This file uses only the standard
library, so the skill's process needs nothing of vaultd's but this file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from typing import Any, TextIO


class ToolError(Exception):
    """vaultd refused or could not do a tool call; the message says why."""


class Tools:
    """What a skill gets to reach the world: `tools.call("social.post", text=..., ...)`."""

    def __init__(self, requests: TextIO, answers: TextIO) -> None:
        self._requests = requests
        self._answers = answers

    def call(self, name: str, **args: Any) -> Any:
        self._requests.write(json.dumps({"call": name, "args": args}) + "\n")
        self._requests.flush()
        line = self._answers.readline()
        if not line:
            raise ToolError("vaultd closed the channel")
        answer = json.loads(line)
        if "error" in answer:
            raise ToolError(answer["error"])
        return answer.get("ok")


def main(argv: list[str]) -> int:
    script = argv[1]
    # The channel to vaultd is the original stdout; the skill's own prints go to stderr.
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    answers = sys.stdin
    inputs = json.loads(answers.readline() or "{}")
    try:
        spec = importlib.util.spec_from_file_location("skill_execute", script)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {script}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result = module.run(inputs, Tools(channel, answers))
        line = json.dumps({"result": result})
    except ToolError as error:
        line = json.dumps({"failed": str(error)})
    except Exception as error:  # noqa: BLE001 - any failure of the skill is its run's failure
        traceback.print_exc()
        line = json.dumps({"failed": f"{type(error).__name__}: {error}"})
    channel.write(line + "\n")
    channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
