"""The live X (Twitter) connector: posts, replies and DMs through tweepy's API v2 `Client`.

Exactly once (design §3): a tweet cannot carry a hidden marker, so before sending, the
connector records in Memory (the ledger) what it is about to send and when; after success it
records the result. `lookup(marker)` answers from Memory first, then reads the account's
recent tweets and matches the text it sent. Writes are never retried; reads (lookup, check)
are retried with tenacity on transient errors only.

tweepy 4.x has no setting for the API host (`BaseClient.request` hard-codes
https://api.twitter.com) nor for timeouts, so the client's `requests` session is replaced by
one that rewrites that host to TWITTER_API_URL before the request is signed and puts a timeout
on every call.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import requests
import tweepy
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

from daemon.connectors.base import Absent, Found, Health, Lookup, Memory, Undetermined
from daemon.connectors.paths import segment
from daemon.connectors.social import DEFAULT_X_API_URL, twitter_request
from daemon.core.errors import (
    AuthError,
    ConnectorError,
    Deferred,
    OutcomeUnknown,
    PermanentError,
    TransientError,
)
from daemon.core.models import Action, SocialPost
from daemon.core.policy import Facts
from daemon.core.settings import Settings

REQUIRED = (
    "TWITTER_API_KEY",
    "TWITTER_API_SECRET",
    "TWITTER_ACCESS_TOKEN",
    "TWITTER_ACCESS_SECRET",
)
TWEEPY_HOST = "https://api.twitter.com"  # what tweepy's BaseClient.request always uses
TWEET_URL = "https://x.com/i/web/status/{id}"

# When X answers 429 without an x-rate-limit-reset header.
DEFAULT_RATE_LIMIT_WAIT = timedelta(minutes=15)
# Connect and read timeouts, in seconds, for every call.
DEFAULT_TIMEOUT = (5.0, 30.0)
READ_ATTEMPTS = 3
# How far back of the recorded send time lookup reads (clock skew between us and X).
LOOKUP_SLACK = timedelta(minutes=5)
LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_PAGES = 5

_URL = re.compile(r"https?://\S+")
_LEADING_MENTIONS = re.compile(r"^(?:@\w+\s+)+")

T = TypeVar("T")


def tweet_url(tweet_id: str) -> str:
    """Given a tweet id, return the tweet's public link (the id quoted into its path)."""
    return TWEET_URL.format(id=segment(tweet_id))


def comparable(text: str) -> str:
    """Return tweet text as it can be compared with what X gives back.

    X shortens every link to a t.co link, HTML-escapes &, < and >, and may put the
    @mentions of a reply in front of the text.
    """
    text = html.unescape(text)
    text = _LEADING_MENTIONS.sub("", text.strip())
    return " ".join(_URL.sub("<link>", text).split())


class _HostSession(requests.Session):
    """A requests session that sends tweepy's calls to another host, each with a timeout."""

    def __init__(self, base_url: str, timeout: float | tuple[float, float]) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if isinstance(url, str) and url.startswith(TWEEPY_HOST):
            url = self.base_url + url[len(TWEEPY_HOST) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


def _api_message(error: tweepy.HTTPException) -> str:
    messages = [str(m) for m in error.api_messages if m]
    status = getattr(error.response, "status_code", "?")
    reason = getattr(error.response, "reason", "")
    return f"X answered {status} {reason}".rstrip() + (
        ": " + "; ".join(messages) if messages else ""
    )


def _never_reached_x(error: requests.RequestException) -> bool:
    """Whether the request failed before it could have been sent (no connection made)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    cause: BaseException | None = error
    seen = 0
    while cause is not None and seen < 10:
        text = f"{type(cause).__name__} {cause}"
        if (
            "NewConnectionError" in text
            or "ConnectTimeoutError" in text
            or ("NameResolutionError" in text)
        ):
            return True
        reason = getattr(cause, "reason", None)
        nested = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None
        cause = reason if isinstance(reason, BaseException) else nested or cause.__cause__
        seen += 1
    return False


def http_error(error: tweepy.HTTPException, *, now: datetime | None = None) -> ConnectorError:
    """Map an HTTP error answer from X to vaultd's error kinds (X did not do the work)."""
    message = _api_message(error)
    if isinstance(error, tweepy.TooManyRequests):
        now = now or datetime.now(UTC)
        reset = error.reset_time
        retry_at = (
            datetime.fromtimestamp(reset, UTC)
            if reset is not None
            else now + DEFAULT_RATE_LIMIT_WAIT
        )
        return Deferred(f"{message}; rate limited until {retry_at.isoformat()}", retry_at)
    if isinstance(error, tweepy.Unauthorized):
        return AuthError(f"{message} (check TWITTER_API_KEY, TWITTER_ACCESS_TOKEN and secrets)")
    if isinstance(error, tweepy.TwitterServerError):
        return TransientError(message)
    return PermanentError(message)


class TwitterLive:
    """The X connector: one tweepy Client, OAuth 1.0a user context."""

    name = "twitter"

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        access_token: str,
        access_secret: str,
        memory: Memory,
        api_url: str = DEFAULT_X_API_URL,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        read_wait: wait_base | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.memory = memory
        self.client = tweepy.Client(
            consumer_key=api_key,
            consumer_secret=api_secret,
            access_token=access_token,
            access_token_secret=access_secret,
            wait_on_rate_limit=False,
        )
        self.client.session = _HostSession(self.api_url, timeout)
        self.read_wait = read_wait or wait_random_exponential(multiplier=0.5, max=4)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._user: dict[str, str] | None = None

    # -- the request -------------------------------------------------------------------

    def describe(self, action: Action, *, marker: str) -> dict[str, Any]:
        _post(action)
        request = twitter_request(action, marker)
        # The base URL is this connector's, not whatever the environment says.
        path = request["url"].split("/2/", 1)[1]
        request["url"] = f"{self.api_url}/2/{path}"
        return request

    def execute(self, action: Action, *, marker: str, dry_run: bool) -> dict[str, Any]:
        post = _post(action)
        request = self.describe(action, marker=marker)
        if dry_run:
            return {"dry_run": True, "request": request}
        text = request["json"]["text"]
        # tweepy puts the participant into the URL path as it is: quoted, it stays one id.
        participant = segment(post.recipient) if post.kind == "dm" else None
        # Recorded before sending, so that lookup knows what to look for (and that nothing
        # was sent when it finds no record).
        self.memory.remember(
            marker,
            "sending",
            {"kind": post.kind, "text": text, "at": self.clock().isoformat()},
        )
        try:
            if post.kind == "dm":
                response = self.client.create_direct_message(
                    participant_id=participant, text=text, user_auth=True
                )
            else:
                response = self.client.create_tweet(
                    text=text,
                    in_reply_to_tweet_id=post.in_reply_to if post.kind == "reply" else None,
                    user_auth=True,
                )
        except tweepy.TwitterServerError as error:
            # A 5xx can come after X created the tweet: only a lookup can tell.
            raise OutcomeUnknown(f"X answered {_api_message(error)} after the request") from error
        except tweepy.HTTPException as error:
            raise http_error(error, now=self.clock()) from error
        except requests.RequestException as error:
            if _never_reached_x(error):
                raise TransientError(f"could not reach X at {self.api_url}: {error}") from error
            raise OutcomeUnknown(
                f"X may have taken the request, its answer was lost: {error}"
            ) from error
        data = response.data or {}
        if post.kind == "dm":
            result = {
                "kind": "dm",
                "dm_event_id": str(data.get("dm_event_id", "")),
                "dm_conversation_id": str(data.get("dm_conversation_id", "")),
                "recipient": post.recipient,
            }
        else:
            tweet_id = str(data.get("id", ""))
            if not tweet_id:
                raise OutcomeUnknown(f"X answered without a tweet id: {data!r}")
            result = {"kind": post.kind, "tweet_id": tweet_id, "url": tweet_url(tweet_id)}
            if post.kind == "reply":
                result["in_reply_to"] = post.in_reply_to
        self.memory.remember(marker, "result", result)
        return result

    # -- reconciliation and health ------------------------------------------------------

    def lookup(self, marker: str) -> Lookup:
        recalled = self.memory.recall(marker)
        if isinstance(recalled.get("result"), dict):
            return Found(recalled["result"])
        sending = recalled.get("sending")
        if not isinstance(sending, dict):
            # execute records what it sends before sending: no record, nothing sent.
            return Absent()
        if sending.get("kind") == "dm":
            return Undetermined(
                "X offers no way here to find a sent DM again; check the inbox", lasting=True
            )
        try:
            since = datetime.fromisoformat(str(sending["at"])) - LOOKUP_SLACK
            text, kind = str(sending["text"]), str(sending.get("kind", "post"))
            answer = self._read(lambda: self._find_tweet(marker, text, kind, since))
        except (ConnectorError, KeyError, ValueError) as error:
            return Undetermined(f"could not read the account's recent tweets: {error}")
        if isinstance(answer, Found):
            self.memory.remember(marker, "result", answer.result)
        return answer

    def _find_tweet(self, marker: str, text: str, kind: str, since: datetime) -> Lookup:
        user_id = self._me(marker)["id"]
        wanted = comparable(text)
        token: str | None = None
        for _ in range(LOOKUP_MAX_PAGES):
            params: dict[str, Any] = {
                "max_results": LOOKUP_PAGE_SIZE,
                "start_time": since,
                "tweet_fields": ["created_at", "referenced_tweets"],
                "user_auth": True,
            }
            if token:
                params["pagination_token"] = token
            tweets = partial(self.client.get_users_tweets, segment(user_id), **params)
            page = self._call_read(tweets)
            for tweet in page.data or []:
                if comparable(tweet.text) == wanted:
                    tweet_id = str(tweet.id)
                    result = {
                        "kind": kind,
                        "tweet_id": tweet_id,
                        "url": tweet_url(tweet_id),
                        "found_by": "lookup",
                    }
                    self.memory.remember(marker, "result", result)
                    return Found(result)
            token = (page.meta or {}).get("next_token")
            if not token:
                return Absent()
        return Undetermined(
            f"more than {LOOKUP_MAX_PAGES} pages of recent tweets to read", lasting=True
        )

    def check(self) -> Health:
        try:
            user = self._read(lambda: self._me(None))
        except ConnectorError as error:
            return Health(False, str(error))
        return Health(True, f"X account @{user['username']}", {"user_id": user["id"]})

    def facts(self, action: Action) -> Facts:
        return Facts()

    # -- reads ---------------------------------------------------------------------------

    def _me(self, marker: str | None) -> dict[str, str]:
        if self._user is None:
            response = self._call_read(lambda: self.client.get_me(user_auth=True))
            if response.data is None:
                raise PermanentError("X answered /2/users/me without a user")
            self._user = {"id": str(response.data.id), "username": str(response.data.username)}
        if marker is not None:
            self.memory.remember(marker, "user_id", self._user["id"])
        return self._user

    def _call_read(self, call: Callable[[], T]) -> T:
        """Make one read call, mapping every failure to a vaultd error."""
        try:
            return call()
        except tweepy.HTTPException as error:
            raise http_error(error, now=self.clock()) from error
        except requests.RequestException as error:
            raise TransientError(f"could not read from X at {self.api_url}: {error}") from error

    def read(self, call: Callable[[], T]) -> T:
        """Make one read call of the client, errors mapped and retried like the connector's."""
        return self._read(lambda: self._call_read(call))

    def _read(self, work: Callable[[], T]) -> T:
        """Run a read, retried on transient errors only (exponential backoff with jitter)."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(READ_ATTEMPTS),
            wait=self.read_wait,
            reraise=True,
        )
        return retrying(work)


def _post(action: Action) -> SocialPost:
    if not isinstance(action, SocialPost):
        raise PermanentError(f"the X connector cannot send {type(action).__name__}")
    return action


def connect(settings: Settings, memory: Memory) -> TwitterLive:
    """Return the live X connector, or raise NotConfigured naming the missing settings."""
    settings.require(*REQUIRED)
    call_timeout = settings.call_timeout()
    return TwitterLive(
        timeout=(DEFAULT_TIMEOUT[0], call_timeout) if call_timeout else DEFAULT_TIMEOUT,
        api_key=settings.get("TWITTER_API_KEY") or "",
        api_secret=settings.get("TWITTER_API_SECRET") or "",
        access_token=settings.get("TWITTER_ACCESS_TOKEN") or "",
        access_secret=settings.get("TWITTER_ACCESS_SECRET") or "",
        memory=memory,
        api_url=settings.get("TWITTER_API_URL", DEFAULT_X_API_URL) or DEFAULT_X_API_URL,
    )
