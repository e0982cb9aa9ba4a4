"""Write the CEO briefing of a week (by default the last completed one)."""

from typing import Any


def run(inputs: dict[str, Any], tools: Any) -> Any:
    return tools.call("briefing.generate", **inputs)
