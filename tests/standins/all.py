"""All three loopback stand-ins at once: Odoo, the Graph API and the X API.

Tests use `running_all()`. To try `vaultd run --live` by hand:

    .venv/bin/python tests/standins/all.py /tmp/standins.env
    .venv/bin/vaultd run --vault vault --live --env-file /tmp/standins.env

Everything runs on 127.0.0.1 and nothing leaves the machine.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `standins` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from standins.graph import GraphStandIn
from standins.odoo import FakeOdoo, StandInServer, running_odoo
from standins.x_api import CONSUMER_KEY, XServer


@dataclass
class StandIns:
    odoo: StandInServer
    graph: GraphStandIn
    x: XServer

    def env(self) -> dict[str, str]:
        """The settings that point vaultd at these stand-ins."""
        return {
            "ODOO_URL": self.odoo.url,
            "ODOO_DB": "acme",
            "ODOO_USERNAME": "admin",
            "ODOO_PASSWORD": "secret",
            **self.graph.env(),
            "TWITTER_API_KEY": CONSUMER_KEY,
            "TWITTER_API_SECRET": "x-test-consumer-secret",
            "TWITTER_ACCESS_TOKEN": "1700000000000000001-x-test-token",
            "TWITTER_ACCESS_SECRET": "x-test-token-secret",
            "TWITTER_API_URL": self.x.url,
        }


@contextmanager
def running_all() -> Iterator[StandIns]:
    with running_odoo(FakeOdoo()) as odoo, GraphStandIn() as graph:
        x = XServer().start()
        try:
            yield StandIns(odoo, graph, x)
        finally:
            x.stop()


def main() -> None:  # pragma: no cover - run by hand
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("standins.env")
    with running_all() as standins:
        target.write_text("".join(f"{k}={v}\n" for k, v in standins.env().items()))
        print(f"stand-ins running; settings written to {target}. Ctrl-C stops them.")
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
