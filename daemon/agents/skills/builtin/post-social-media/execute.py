"""Request one post on the chosen platforms; a person approves it before it goes out."""

from typing import Any


def run(inputs: dict[str, Any], tools: Any) -> Any:
    post = {"platforms": inputs.get("platforms", ["facebook", "twitter"]), "text": inputs["text"]}
    for key in ("link", "image_url", "scheduled_for"):
        if key in inputs:
            post[key] = inputs[key]
    return tools.call("social.post", **post)
