"""The live Instagram connector (Instagram API with Facebook Login, content publishing).

A post is published in steps: create a media container (`POST /{ig-user-id}/media`), whose
id goes into the ledger at once; poll its `status_code` until FINISHED (ERROR or EXPIRED
fail the action); read `content_publishing_limit` and defer when the quota is used up; then
`POST /{ig-user-id}/media_publish`. Only that last call publishes anything, and it turns
the container's status into PUBLISHED, which is what `lookup` reads after a crash.

A container still IN_PROGRESS after the bounded polling defers the action (a few minutes)
rather than failing it: nothing was published, the container stays usable for 24 hours and
the retry reuses it instead of uploading again; a container that never finishes ends as
EXPIRED, which fails the action, so the waiting is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.connectors.base import Absent, Found, Health, Lookup, Memory, Undetermined
from daemon.connectors.graph import GraphClient
from daemon.connectors.paths import path
from daemon.core.errors import ConnectorError, Deferred, PermanentError
from daemon.core.models import Action, SocialPost
from daemon.core.policy import Facts
from daemon.core.settings import Settings

REQUIRED = ("INSTAGRAM_ACCOUNT_ID", "FACEBOOK_PAGE_TOKEN")
# Seconds to wait between status reads; one read first, then one after each wait.
POLL_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
STILL_PROCESSING_RETRY = timedelta(minutes=5)
# The quota is a rolling 24-hour window: look again in an hour, as older posts age out.
QUOTA_RETRY = timedelta(hours=1)
DM_UNSUPPORTED = "instagram: direct messages are not supported by vaultd yet"


def connect(settings: Settings, memory: Memory) -> InstagramConnector:
    settings.require(*REQUIRED)
    client = GraphClient.from_settings(settings, service="instagram")
    return InstagramConnector(client, str(settings.get("INSTAGRAM_ACCOUNT_ID")), memory)


class InstagramConnector:
    name = "instagram"

    def __init__(
        self,
        client: GraphClient,
        account_id: str,
        memory: Memory,
        *,
        poll_delays: Sequence[float] = POLL_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.account_id = account_id
        self.memory = memory
        self.poll_delays = tuple(poll_delays)
        self.sleep = sleep
        self.clock = clock

    def _post(self, action: Action) -> SocialPost:
        if not isinstance(action, SocialPost):
            raise PermanentError(f"instagram cannot send {type(action).__name__}")
        if action.kind == "dm":
            raise PermanentError(DM_UNSUPPORTED)
        return action

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        if isinstance(action, SocialPost) and action.kind == "dm":
            return {"unsupported": DM_UNSUPPORTED}
        post = self._post(action)
        if post.kind == "reply":
            return {
                "method": "POST",
                "url": self.client.url(path(post.in_reply_to, "replies")),
                "params": {"message": post.text},
            }
        return {
            "method": "POST",
            "url": self.client.url(path(self.account_id, "media")),
            "params": _container_fields(post),
            "then": {
                "method": "POST",
                "url": self.client.url(path(self.account_id, "media_publish")),
                "params": {"creation_id": "<container id>"},
            },
        }

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        post = self._post(action)
        if dry_run:
            return {"dry_run": True, "request": self.describe(action, marker=marker)}
        if post.kind == "reply":
            replies = path(post.in_reply_to, "replies")  # refused before anything is recorded
            self.memory.remember(marker, "reply_sent", True)
            answer = self.client.write(replies, {"message": post.text})
            reply_id = str(answer.get("id") or "")
            self.memory.remember(marker, "id", reply_id)
            return {"id": reply_id, "kind": "reply"}

        fields = _container_fields(post)
        container = self._reusable_container(marker, fields)
        if container is None:
            answer = self.client.write(path(self.account_id, "media"), fields, publishes=False)
            container = str(answer.get("id") or "")
            if not container:
                raise PermanentError(f"instagram: no container id in {answer!r}")
            self.memory.remember(marker, "container_id", container)
            self.memory.remember(marker, "container_fields", fields)
        self._wait_until_finished(container)
        self._check_quota()
        published = self.client.write(
            path(self.account_id, "media_publish"), {"creation_id": container}
        )
        media_id = str(published.get("id") or "")
        self.memory.remember(marker, "media_id", media_id)
        return {"id": media_id, "container_id": container, "kind": "post"}

    def _reusable_container(self, marker: str, fields: dict[str, str]) -> str | None:
        """Return the container of an earlier try of this very post, if it can be published."""
        memo = self.memory.recall(marker)
        container = memo.get("container_id")
        if not container or memo.get("container_fields") != fields:
            return None
        status = self._status(str(container))
        if status.get("status_code") == "PUBLISHED":
            # A lookup would have found it; never publish a second time.
            raise PermanentError(f"instagram: container {container} is already published")
        if status.get("status_code") in ("FINISHED", "IN_PROGRESS"):
            return str(container)
        return None

    def _status(self, container: str) -> dict[str, Any]:
        return self.client.read(path(container), fields="status_code,status")

    def _wait_until_finished(self, container: str) -> None:
        for attempt in range(len(self.poll_delays) + 1):
            if attempt:
                self.sleep(self.poll_delays[attempt - 1])
            status = self._status(container)
            code = status.get("status_code")
            if code == "FINISHED":
                return
            if code in ("ERROR", "EXPIRED"):
                detail = status.get("status") or code
                raise PermanentError(f"instagram: media container {container} {code}: {detail}")
            if code == "PUBLISHED":
                raise PermanentError(f"instagram: container {container} is already published")
        raise Deferred(
            f"instagram: media container {container} is still processing; publishing later",
            self.clock() + STILL_PROCESSING_RETRY,
        )

    def _check_quota(self) -> None:
        answer = self.client.read(
            path(self.account_id, "content_publishing_limit"), fields="quota_usage,config"
        )
        rows = answer.get("data") or [{}]
        usage = rows[0].get("quota_usage")
        total = (rows[0].get("config") or {}).get("quota_total")
        if isinstance(usage, int) and isinstance(total, int) and usage >= total:
            raise Deferred(
                f"instagram: publishing quota used up ({usage} of {total} in 24 hours)",
                self.clock() + QUOTA_RETRY,
            )

    def lookup(self, marker: str) -> Lookup:
        memo = self.memory.recall(marker)
        if memo.get("media_id"):
            return Found(
                {"id": memo["media_id"], "container_id": memo.get("container_id"), "kind": "post"}
            )
        if memo.get("id"):
            return Found({"id": memo["id"], "kind": "reply"})
        if memo.get("reply_sent"):
            return Undetermined(
                "instagram: a reply whose answer was lost cannot be looked up", lasting=True
            )
        container = memo.get("container_id")
        if not container:
            return Absent()  # no container: nothing can have been published
        try:
            status = self._status(str(container))
        except ConnectorError as error:
            return Undetermined(f"instagram: cannot read container {container}: {error}")
        if status.get("status_code") != "PUBLISHED":
            return Absent()  # only media_publish makes a container PUBLISHED
        result: dict[str, Any] = {"container_id": container, "kind": "post", "found_by": "status"}
        media_id = self._find_media(memo.get("container_fields") or {})
        if media_id:
            result["id"] = media_id
        return Found(result)

    def _find_media(self, fields: dict[str, Any]) -> str | None:
        """Best effort: the id of the account's recent media with this caption."""
        try:
            answer = self.client.read(
                path(self.account_id, "media"), fields="id,caption,timestamp", limit=25
            )
        except ConnectorError:
            return None
        for item in answer.get("data") or []:
            if item.get("caption") == fields.get("caption"):
                return str(item.get("id"))
        return None

    def check(self) -> Health:
        try:
            account = self.client.read(path(self.account_id), fields="id,username")
            limit = self.client.read(
                path(self.account_id, "content_publishing_limit"), fields="quota_usage,config"
            )
        except ConnectorError as error:
            return Health(False, str(error))
        return Health(
            True,
            f"instagram account {account.get('username')} ({account.get('id')})",
            {"publishing_limit": (limit.get("data") or [{}])[0]},
        )

    def facts(self, action: Action) -> Facts:
        return Facts()


def _container_fields(post: SocialPost) -> dict[str, str]:
    return {"image_url": post.image_url or "", "caption": post.text}
