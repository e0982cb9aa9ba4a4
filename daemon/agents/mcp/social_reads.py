"""Reading the social accounts for agents: recent Facebook Page posts and recent X posts.

Through the live connectors' own clients (pyfacebook's GraphAPI, tweepy's Client), with the
same settings, timeouts and error mapping; reads only, retried on transient errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from daemon.connectors import facebook_live, twitter_live
from daemon.connectors.base import ScratchMemory
from daemon.connectors.graph import GraphClient
from daemon.core.errors import PermanentError
from daemon.core.settings import Settings

T = TypeVar("T")

FEED_FIELDS = "id,message,created_time,permalink_url"
# X answers max_results only between these two.
X_PAGE_MIN, X_PAGE_MAX = 5, 100


class FacebookReads:
    def __init__(self, client: GraphClient, page_id: str) -> None:
        self.client = client
        self.page_id = page_id

    @classmethod
    def from_settings(cls, settings: Settings) -> FacebookReads:
        """Raise NotConfigured naming the missing settings."""
        settings.require(*facebook_live.REQUIRED)
        client = GraphClient.from_settings(settings, service="facebook")
        return cls(client, str(settings.get("FACEBOOK_PAGE_ID")))

    def recent_posts(self, limit: int) -> list[dict[str, Any]]:
        """Return the page feed's latest posts, newest first (GraphClient retries reads)."""
        page = self.client.read(f"{self.page_id}/feed", fields=FEED_FIELDS, limit=limit)
        return [
            {
                "id": str(item.get("id")),
                "message": item.get("message"),
                "created_time": item.get("created_time"),
                "url": item.get("permalink_url") or f"https://www.facebook.com/{item.get('id')}",
            }
            for item in (page.get("data") or [])[:limit]
        ]


class XReads:
    def __init__(self, connector: twitter_live.TwitterLive) -> None:
        self.connector = connector
        self.client = connector.client
        self._user: dict[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> XReads:
        """Raise NotConfigured naming the missing settings."""
        return cls(twitter_live.connect(settings, ScratchMemory()))

    def account(self) -> dict[str, str]:
        if self._user is None:
            me = self._read(lambda: self.client.get_me(user_auth=True))
            if me.data is None:
                raise PermanentError("X answered /2/users/me without a user")
            self._user = {"id": str(me.data.id), "username": str(me.data.username)}
        return self._user

    def recent_posts(self, limit: int) -> dict[str, Any]:
        """Return the account and its latest posts, newest first."""
        user = self.account()
        size = min(max(limit, X_PAGE_MIN), X_PAGE_MAX)
        page = self._read(
            lambda: self.client.get_users_tweets(
                user["id"], max_results=size, tweet_fields=["created_at"], user_auth=True
            )
        )
        posts = [
            {
                "id": str(tweet.id),
                "text": tweet.text,
                "created_at": tweet.created_at.isoformat() if tweet.created_at else None,
                "url": twitter_live.TWEET_URL.format(id=tweet.id),
            }
            for tweet in (page.data or [])[:limit]
        ]
        return {"account": f"@{user['username']}", "posts": posts}

    def _read(self, call: Callable[[], T]) -> T:
        return self.connector.read(call)
