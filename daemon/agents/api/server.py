"""ApiServer: the REST API served by uvicorn in a background thread.

`vaultd serve` runs one in the foreground; `vaultd run --api` can start one beside the
watcher and supervise it through `healthy()`, `stop()` and `start()` again (it keeps its
port across restarts). It listens on loopback only unless `allow_remote` is given: API keys
and tokens travel in clear over plain HTTP, and a caller can make vaultd write task files
into the vault, so another address needs a TLS proxy in front and a deliberate choice.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from daemon.agents.api.app import create_api
from daemon.agents.skills.runs import Runs
from daemon.core.errors import ConfigError, VaultdError
from daemon.core.settings import Settings
from daemon.lifecycle.app import App

log = logging.getLogger("vaultd.api")

HEALTH_PATH = "/healthz"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 2.0
# How long a stop waits for requests in flight (a skill run) before cancelling them.
GRACEFUL_SHUTDOWN_S = 5


def is_loopback(host: str) -> bool:
    """Return True if every address this host name resolves to is a loopback address."""
    if not host.strip():
        return False  # "" binds every interface
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        return all(ipaddress.ip_address(str(info[4][0])).is_loopback for info in infos)
    except ValueError:
        return False


def check_host(host: str, *, allow_remote: bool) -> None:
    """Raise ConfigError for a host that is not loopback, unless remote access is allowed."""
    if allow_remote or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to listen on {host}: the API serves plain HTTP, so API keys and tokens "
        "would cross the network in clear, and a caller can make vaultd write task files "
        "into your vault. Keep the default 127.0.0.1, or put a TLS proxy in front and pass "
        "--allow-remote"
    )


class ApiServer:
    name = "API server"

    def __init__(
        self,
        app: App,
        runs: Runs,
        *,
        host: str | None = None,
        port: int | None = None,
        allow_remote: bool = False,
        settings: Settings | None = None,
        access_log: bool = True,
    ) -> None:
        """Build the API of this app (host and port default to `[api]`).

        Raise ConfigError for a non-loopback host without `allow_remote`, or a JWT secret
        too short for the pinned algorithm.
        """
        self.host = host if host is not None else app.config.api.host
        self.port = port if port is not None else app.config.api.port
        check_host(self.host, allow_remote=allow_remote)
        self.api: FastAPI = create_api(app, runs, settings=settings)
        self.api.add_api_route(HEALTH_PATH, _health, include_in_schema=False)
        self.access_log = access_log
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._failure: BaseException | None = None

    @property
    def jwt_enabled(self) -> bool:
        enabled: bool = self.api.state.vaultd.auth.jwt_enabled
        return enabled

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def restart(self) -> None:
        """Stop (if need be) and serve again on the same address (for the supervisor)."""
        self.stop()
        self.start()

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Listen and serve in a background thread; return once it answers.

        Raise VaultdError if the address cannot be bound or the server does not start.
        """
        if self._thread is not None and self._thread.is_alive():
            raise VaultdError("the API server is already running")
        self._socket = _bind(self.host, self.port)
        self.port = self._socket.getsockname()[1]  # the real one when 0 asked for any
        config = uvicorn.Config(
            self.api,
            host=self.host,
            port=self.port,
            lifespan="off",
            log_config=None,  # leave the daemon's logging as it is
            access_log=self.access_log,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        server = uvicorn.Server(config)
        self._server, self._failure = server, None
        self._thread = threading.Thread(
            target=self._serve, args=(server, self._socket), name="vaultd-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                why = f": {self._failure!r}" if self._failure else ""
                raise VaultdError(f"the API server did not start on {self.url}{why}")
            time.sleep(0.01)

    def _serve(self, server: uvicorn.Server, listener: socket.socket) -> None:
        try:
            server.run(sockets=[listener])
        except (Exception, SystemExit) as error:  # uvicorn exits on a startup failure
            self._failure = error
            log.exception("API server stopped")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop serving (requests in flight get a few seconds) and close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._thread = self._socket = None

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def healthy(self) -> bool:
        """Return True if the server thread runs and answers an HTTP request in time."""
        if not self.running() or self._server is None or not self._server.started:
            return False
        connection = http.client.HTTPConnection(self.host, self.port, timeout=HEALTH_TIMEOUT_S)
        try:
            connection.request("GET", HEALTH_PATH)
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()


def _health() -> dict[str, bool]:
    return {"ok": True}


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address, family=family)
    except OSError as error:
        raise VaultdError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
