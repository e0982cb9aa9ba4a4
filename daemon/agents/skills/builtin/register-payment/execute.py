"""Request one payment registration; a person approves it before Odoo is touched."""

from typing import Any


def run(inputs: dict[str, Any], tools: Any) -> Any:
    return tools.call("odoo.register_payment", **inputs)
