"""The requests a social post becomes, one per platform, shaped as the real APIs take them.

Graph API (Facebook page, Instagram business account) and X API v2. Ids that come from the
environment are shown as placeholders when they are not set. Every id in a URL path is
percent-quoted into its one segment, as the live connectors send it (see `paths`).
"""

from __future__ import annotations

import os
from typing import Any

from daemon.connectors.paths import segment
from daemon.core.models import Action, SocialPost

# The services' public addresses; every one can be changed in the settings.
DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION = "v25.0"
DEFAULT_X_API_URL = "https://api.twitter.com"


def _env(name: str) -> str:
    """Given a setting's name, return its value quoted for a URL path, or "<NAME>" if unset."""
    value = os.environ.get(name)
    return segment(value) if value else f"<{name}>"


def _graph(path: str) -> str:
    base = os.environ.get("FACEBOOK_GRAPH_URL", DEFAULT_GRAPH_URL).rstrip("/")
    return f"{base}/{os.environ.get('FACEBOOK_GRAPH_VERSION', DEFAULT_GRAPH_VERSION)}/{path}"


def _post(action: Action) -> SocialPost:
    if not isinstance(action, SocialPost):
        raise TypeError(f"a social connector cannot send {type(action).__name__}")
    return action


def facebook_request(action: Action, marker: str) -> dict[str, Any]:
    post = _post(action)
    page = _env("FACEBOOK_PAGE_ID")
    if post.kind == "reply":
        return {
            "method": "POST",
            "url": _graph(f"{segment(post.in_reply_to)}/comments"),
            "params": {"message": post.text},
        }
    if post.kind == "dm":
        return {
            "method": "POST",
            "url": _graph(f"{page}/messages"),
            "params": {
                "recipient": {"id": post.recipient},
                "message": {"text": post.text},
                "messaging_type": "RESPONSE",
            },
        }
    params = {"message": post.text}
    if post.link:
        params["link"] = post.link
    return {"method": "POST", "url": _graph(f"{page}/feed"), "params": params}


def instagram_request(action: Action, marker: str) -> dict[str, Any]:
    post = _post(action)
    account = _env("INSTAGRAM_ACCOUNT_ID")
    if post.kind == "reply":
        return {
            "method": "POST",
            "url": _graph(f"{segment(post.in_reply_to)}/replies"),
            "params": {"message": post.text},
        }
    if post.kind == "dm":
        return {
            "method": "POST",
            "url": _graph(f"{account}/messages"),
            "params": {"recipient": {"id": post.recipient}, "message": {"text": post.text}},
        }
    # Instagram publishes in two calls: a media container, then media_publish with its id.
    return {
        "method": "POST",
        "url": _graph(f"{account}/media"),
        "params": {"image_url": post.image_url, "caption": post.text},
        "then": {
            "method": "POST",
            "url": _graph(f"{account}/media_publish"),
            "params": {"creation_id": "<container id>"},
        },
    }


def twitter_request(action: Action, marker: str) -> dict[str, Any]:
    post = _post(action)
    base = os.environ.get("TWITTER_API_URL", DEFAULT_X_API_URL).rstrip("/")
    if post.kind == "dm":
        return {
            "method": "POST",
            "url": f"{base}/2/dm_conversations/with/{segment(post.recipient)}/messages",
            "json": {"text": post.text},
        }
    body: dict[str, Any] = {"text": post.text if not post.link else f"{post.text} {post.link}"}
    if post.kind == "reply":
        body["reply"] = {"in_reply_to_tweet_id": post.in_reply_to}
    return {"method": "POST", "url": f"{base}/2/tweets", "json": body}
