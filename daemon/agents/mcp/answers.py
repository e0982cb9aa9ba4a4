"""How every vaultd tool answers: secrets redacted, and failures as clear MCP tool errors.

A tool that cannot do what it was asked raises ToolError with vaultd's own message (the MCP
client sees `is_error` and the text, never a traceback). Anything unexpected is logged on
stderr, redacted, and answered with its type and message only.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from daemon.core.errors import NotConfigured, VaultdError

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")
Redact = Callable[[Any], Any]

log = logging.getLogger("vaultd.mcp")


def guarded(
    redact: Redact, *, lock: threading.Lock | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Return a decorator for tools: redact the answer, turn errors into ToolError.

    `lock`, if given, lets one call at a time through (the tools share one ledger and one
    run service, whose rate limits are checked and then recorded).
    """

    def decorate(tool: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(tool)
        def answer(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                with lock or nullcontext():
                    result: R = redact(tool(*args, **kwargs))
                    return result
            except (ToolError, VaultdError) as error:
                raise ToolError(str(redact(str(error)))) from None
            except Exception as error:  # noqa: BLE001 - the client gets a message, not a crash
                what = str(redact(f"{type(error).__name__}: {error}"))
                log.error("MCP tool %s failed: %s", tool.__name__, what)
                raise ToolError(f"{tool.__name__} failed unexpectedly: {what}") from None

        return answer

    return decorate


def lazily(make: Callable[[], C], service: str) -> Callable[[], C]:
    """Return a getter that makes the client at its first use (then keeps it).

    A server whose service has no settings still starts, and each of its tools says what is
    missing instead of the whole server failing to start.
    """
    made: list[C] = []

    def get() -> C:
        if not made:
            try:
                made.append(make())
            except NotConfigured as error:
                raise NotConfigured(
                    f"{service} is not configured: {error} (set them in the environment or "
                    "in the env file given to `vaultd mcp --env-file`)"
                ) from None
        return made[0]

    return get
