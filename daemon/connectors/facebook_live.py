"""The live Facebook Page connector: page posts, comments (replies) and Page messages.

A Facebook post cannot carry a hidden marker, so the connector remembers (in the ledger)
what it is about to send and when, before sending it. `lookup` then reads the page feed
(or the post's comments) back to that moment and looks for exactly that message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.connectors.base import Absent, Found, Health, Lookup, Memory, Undetermined
from daemon.connectors.graph import GraphClient, graph_time
from daemon.connectors.paths import path as url_path
from daemon.connectors.paths import segment
from daemon.core.errors import ConnectorError, PermanentError
from daemon.core.models import Action, SocialPost
from daemon.core.policy import Facts
from daemon.core.settings import Settings

REQUIRED = ("FACEBOOK_PAGE_ID", "FACEBOOK_PAGE_TOKEN")
# Our clock and Facebook's may disagree: look back this much further than the intent.
CLOCK_SKEW = timedelta(minutes=10)
LISTING_FIELDS = "id,message,created_time"
PAGE_SIZE = 25
MAX_PAGES = 8


def connect(settings: Settings, memory: Memory) -> FacebookConnector:
    settings.require(*REQUIRED)
    client = GraphClient.from_settings(settings, service="facebook")
    return FacebookConnector(client, str(settings.get("FACEBOOK_PAGE_ID")), memory)


class FacebookConnector:
    name = "facebook"

    def __init__(self, client: GraphClient, page_id: str, memory: Memory) -> None:
        self.client = client
        self.page_id = page_id
        self.memory = memory

    def _plan(self, action: Action) -> tuple[str, str, dict[str, str]]:
        """Given an action, return the Graph object, edge and form fields it is sent as.

        Raise PermanentError if it is not a social post.
        """
        if not isinstance(action, SocialPost):
            raise PermanentError(f"facebook cannot send {type(action).__name__}")
        if action.kind == "reply":
            return str(action.in_reply_to), "comments", {"message": action.text}
        if action.kind == "dm":
            return (
                self.page_id,
                "messages",
                {
                    "recipient": json.dumps({"id": action.recipient}),
                    "message": json.dumps({"text": action.text}),
                    "messaging_type": "RESPONSE",
                },
            )
        data = {"message": action.text}
        if action.link:
            data["link"] = action.link
        return self.page_id, "feed", data

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        target, edge, data = self._plan(action)
        return {"method": "POST", "url": self.client.url(url_path(target, edge)), "params": data}

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        target, edge, data = self._plan(action)
        if dry_run:
            return {"dry_run": True, "request": self.describe(action, marker=marker)}
        path = url_path(target, edge)  # the ids quoted: never a path of their own
        # Before sending: what and when, so that a lookup can find it if the answer is lost.
        self.memory.remember(
            marker,
            "request",
            {
                "object": target,
                "edge": edge,
                "message": data["message"] if edge != "messages" else action_text(action),
                "link": data.get("link"),
                "sent_after": datetime.now(UTC).isoformat(),
            },
        )
        answer = self.client.write(path, data)
        remote_id = str(answer.get("id") or answer.get("message_id") or "")
        if not remote_id:
            raise PermanentError(f"facebook: no id in the answer {answer!r}")
        self.memory.remember(marker, "id", remote_id)
        result: dict[str, Any] = {"id": remote_id, "kind": _kind(edge)}
        if edge != "messages":
            result["url"] = f"https://www.facebook.com/{segment(remote_id)}"
        return result

    def lookup(self, marker: str) -> Lookup:
        memo = self.memory.recall(marker)
        sent = memo.get("request")
        if memo.get("id"):
            kind = _kind(sent["edge"]) if isinstance(sent, dict) else "post"
            return Found({"id": memo["id"], "kind": kind, "found_by": "ledger"})
        if not isinstance(sent, dict):
            return Absent()  # nothing was ever sent under this marker
        if sent.get("edge") == "messages":
            return Undetermined("facebook: a sent Page message cannot be looked up", lasting=True)
        try:
            return self._search(sent)
        except ConnectorError as error:
            return Undetermined(f"facebook: cannot read the {sent.get('edge')}: {error}")

    def _search(self, sent: dict[str, Any]) -> Lookup:
        """Read the feed (or comments) back to the intent; find the exact message."""
        sent_after = datetime.fromisoformat(str(sent["sent_after"])) - CLOCK_SKEW
        params: dict[str, Any] = {"fields": LISTING_FIELDS, "limit": PAGE_SIZE}
        if sent["edge"] == "comments":
            params["order"] = "reverse_chronological"
        path = url_path(sent["object"], sent["edge"])
        for _ in range(MAX_PAGES):
            page = self.client.read(path, **params)
            for item in page.get("data") or []:
                created = graph_time(str(item.get("created_time")))
                if created is not None and created < sent_after:
                    return Absent()  # read back past the intent: it is not there
                if item.get("message") == sent["message"]:
                    return Found(
                        {"id": str(item["id"]), "kind": _kind(sent["edge"]), "found_by": "feed"}
                    )
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return Absent()  # the whole listing was read
            params["after"] = after
        return Undetermined(
            f"facebook: more than {MAX_PAGES * PAGE_SIZE} items since the intent", lasting=True
        )

    def check(self) -> Health:
        try:
            me = self.client.read("me", fields="id,name")
        except ConnectorError as error:
            return Health(False, str(error))
        if str(me.get("id")) != self.page_id:
            return Health(
                False,
                f"the token is for {me.get('name')} ({me.get('id')}), not page {self.page_id}",
            )
        return Health(True, f"page {me.get('name')} ({me.get('id')})", {"page": me})

    def facts(self, action: Action) -> Facts:
        return Facts()


def action_text(action: Action) -> str:
    return action.text if isinstance(action, SocialPost) else ""


def _kind(edge: str) -> str:
    return {"feed": "post", "comments": "comment", "messages": "message"}.get(edge, edge)
