"""Request one customer invoice; the approval policy decides who must approve it."""

from typing import Any


def run(inputs: dict[str, Any], tools: Any) -> Any:
    invoice = {"partner": inputs["partner"], "lines": inputs["lines"]}
    for key in ("currency", "due_date"):
        if key in inputs:
            invoice[key] = inputs[key]
    return tools.call("odoo.create_invoice", **invoice)
