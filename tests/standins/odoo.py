"""A loopback Odoo: XML-RPC (`/xmlrpc/2/common`, `/xmlrpc/2/object`) and JSON-2 (`/json/2/...`).

It behaves like Odoo for what vaultd uses: partners, products, currencies, journals, customer
invoices (draft → posted, numbered INV/2026/00001 on posting, `amount_total` and
`amount_untaxed` from the lines, which are `account.move.line` records: no taxes here),
search domains with Odoo's operators (`=` exact; `=like`/`=ilike` as SQL LIKE, with `%`, `_`
and `\\` escapes; `like`/`ilike` the same inside `%...%`, unescaped), the payment wizard
(`account.payment.register` → `account.payment`), and errors as Odoo raises them (faults 1-4
over XML-RPC; JSON error objects with 401/403/404/422/500 over JSON-2). Switches make it fail:
`http_errors` (answer the next calls with these statuses, doing nothing), `faults` (raise an
Odoo exception on a given `model.method`), `drop_after` (do the call, commit, then drop the
connection without answering), `drop_after_calls` (the same for several `model.method`s, each
as many times as counted) and `stall_after` (do the call, commit, then answer nothing for that
many seconds, past the client's timeout, and drop the connection), `outage_after` (do the
call, commit, drop the connection, then answer every request with 503 for that many
seconds) and `latency_s` (every answer leaves that long after the work is done, as from a
distant, busy server: a client killed meanwhile never hears of work that was done).
`on_call`, if set, is called with "model.method" after each call is done, before it is
answered (a test can kill the client there).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import xmlrpc.client
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

if __name__ == "__main__":  # run as a script: make `standins` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from standins.http_body import whole_body
from standins.odoo_like import LIKE_OPERATORS, LikeError, like

FAULT_CODES = {
    "UserError": 2,
    "ValidationError": 2,
    "MissingError": 2,
    "AccessDenied": 3,
    "AccessError": 4,
}
JSON2_STATUS = {
    "AccessDenied": 401,
    "AccessError": 403,
    "MissingError": 404,
    "UserError": 422,
    "ValidationError": 422,
}
MANY2ONE = {
    "partner_id": "res.partner",
    "currency_id": "res.currency",
    "journal_id": "account.journal",
    "product_id": "product.product",
    "move_id": "account.move",
}


MODELS = {
    "res.partner",
    "res.currency",
    "res.users",
    "product.product",
    "account.journal",
    "account.move",
    "account.move.line",
    "account.payment",
    "account.payment.register",
}


class OdooException(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Dropped(Exception):
    """The call was done; now hang up without answering."""


class Stalled(Exception):
    """The call was done; now hold the connection without answering, then hang up."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"stalled for {seconds}s")
        self.seconds = seconds


class FakeOdoo:
    """The database and the ORM behaviour; the HTTP server wraps it."""

    def __init__(self, *, version: str = "18.0") -> None:
        self.version = version
        self.lock = threading.RLock()
        self.users = {"admin": (2, "secret")}
        self.api_keys = {"secret": 2}
        self.database = "acme"
        self.records: dict[str, dict[int, dict[str, Any]]] = {}
        self.next_id = 100
        self.sequence = Counter[str]()
        self.calls: Counter[str] = Counter()  # "model.method" → how many times it ran
        self.http_errors: list[int] = []
        self.http_error_on: dict[str, int] = {}  # "model.method" → status, call not done
        self.faults: dict[str, tuple[str, str]] = {}
        self.drop_after: str | None = None
        self.drop_after_calls: Counter[str] = Counter()  # "model.method" → calls to drop
        self.stall_after: dict[str, float] = {}  # "model.method" → seconds, once each
        self.outage_after: dict[str, float] = {}  # "model.method" → seconds down, once each
        self.down_until = 0.0  # time.monotonic() until which every request gets a 503
        self.latency_s = 0.0  # seconds between doing a call and answering it
        self.on_call: Callable[[str], None] | None = None  # told of each call once done
        for name in ("USD", "EUR"):
            self._insert("res.currency", {"name": name, "active": True})
        self._insert("res.partner", {"name": "Acme Corp"})
        self._insert("product.product", {"name": "Consulting", "default_code": "CONS"})
        self._insert("product.product", {"name": "Support Plan", "default_code": "SUP"})
        self._insert("account.journal", {"name": "Bank", "type": "bank"})

    # -- helpers for tests ---------------------------------------------------------------------

    def table(self, model: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r, id=i) for i, r in sorted(self.records.get(model, {}).items())]

    def lines(self, move_id: int) -> list[dict[str, Any]]:
        """Return an invoice's lines (`account.move.line` records), in order."""
        return [line for line in self.table("account.move.line") if line["move_id"] == move_id]

    def _insert(self, model: str, values: dict[str, Any]) -> int:
        self.next_id += 1
        self.records.setdefault(model, {})[self.next_id] = dict(values)
        return self.next_id

    # -- authentication -----------------------------------------------------------------------

    def authenticate(self, db: str, login: str, password: str) -> int | bool:
        user = self.users.get(login)
        if db != self.database or user is None or user[1] != password:
            return False
        return user[0]

    def check_password(self, db: str, uid: int, password: str) -> None:
        if db != self.database or (uid, password) not in self.users.values():
            raise OdooException("AccessDenied", "Access Denied")

    # -- the ORM ------------------------------------------------------------------------------

    def execute(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        key = f"{model}.{method}"
        with self.lock:
            if key in self.faults:
                kind, message = self.faults.pop(key)
                raise OdooException(kind, message)
            if model not in MODELS:
                raise OdooException("AppError", f"KeyError: '{model}'")
            self.calls[key] += 1
            context = kwargs.pop("context", {}) or {}
            result = self._dispatch(model, method, list(args), kwargs, context)
            if self.on_call is not None:
                self.on_call(key)
            if self.drop_after == key:
                self.drop_after = None
                raise Dropped()
            if self.drop_after_calls[key] > 0:
                self.drop_after_calls[key] -= 1
                raise Dropped()
            if key in self.stall_after:
                raise Stalled(self.stall_after.pop(key))
            if key in self.outage_after:
                self.down_until = time.monotonic() + self.outage_after.pop(key)
                raise Dropped()
            return result

    def _dispatch(
        self, model: str, method: str, args: list[Any], kw: dict[str, Any], ctx: dict[str, Any]
    ) -> Any:
        def arg(name: str, position: int, default: Any = None) -> Any:
            return (
                kw.pop(name)
                if name in kw
                else (args[position] if len(args) > position else default)
            )

        if method == "search_read":
            domain, fields = arg("domain", 0, []), arg("fields", 1, None)
            found = self._search(model, domain)[: kw.pop("limit", None) or None]
            return [self._read_one(model, i, fields) for i in found]
        if method == "search":
            return self._search(model, arg("domain", 0, []))
        if method == "search_count":
            return len(self._search(model, arg("domain", 0, [])))
        ids = kw.pop("ids", None)
        if method == "read":
            ids = ids if ids is not None else arg("ids", 0)
            return [
                self._read_one(model, i, arg("fields", 1, None)) for i in self._exist(model, ids)
            ]
        if method == "create":
            vals_list = arg("vals_list", 0)
            single = isinstance(vals_list, dict)
            created = [self._create(model, v, ctx) for v in ([vals_list] if single else vals_list)]
            return created[0] if single else created
        if method == "context_get" and model == "res.users":
            return {"lang": "en_US", "tz": "UTC", "uid": 2}
        ids = ids if ids is not None else arg("ids", 0)
        if method == "write":
            for i in self._exist(model, ids):
                self.records[model][i].update(arg("vals", 1))
            return True
        if method == "action_post" and model == "account.move":
            return self._post(self._exist(model, ids))
        if method == "action_create_payments" and model == "account.payment.register":
            return self._pay(self._exist(model, ids))
        raise OdooException(
            "AppError",
            f"AttributeError: The method '{method}' does not exist on the model '{model}'",
        )

    def _exist(self, model: str, ids: list[int]) -> list[int]:
        table = self.records.get(model, {})
        missing = [i for i in ids if i not in table]
        if missing:
            raise OdooException(
                "MissingError",
                "Record does not exist or has been deleted.\n"
                f"(Record: {model}({', '.join(map(str, missing))},), User: 2)",
            )
        return list(ids)

    def _read_one(self, model: str, record_id: int, fields: list[str] | None) -> dict[str, Any]:
        record = self.records[model][record_id]
        out: dict[str, Any] = {"id": record_id}
        for name in fields or list(record):
            if name == "display_name":
                out[name] = record.get("name", "")
                continue
            if name not in record and name != "id":
                if name not in self._fields(model):
                    raise OdooException(
                        "AppError", f"ValueError: Invalid field '{name}' on model '{model}'"
                    )
                out[name] = False
                continue
            value = record.get(name, False)
            if name in MANY2ONE and value:
                value = [value, self.records[MANY2ONE[name]][value]["name"]]
            out[name] = value
        return out

    def _fields(self, model: str) -> set[str]:
        fields = {
            "account.move": {
                "name",
                "state",
                "amount_total",
                "amount_residual",
                "payment_state",
                "partner_id",
                "currency_id",
                "ref",
                "move_type",
                "invoice_date",
                "invoice_date_due",
                "invoice_line_ids",
                "amount_untaxed",
            },
            "account.move.line": {
                "move_id",
                "product_id",
                "quantity",
                "price_unit",
                "name",
                "display_type",
                "discount",
                "price_subtotal",
            },
            "account.payment": {
                "name",
                "amount",
                "state",
                "date",
                "memo",
                "reconciled_invoice_ids",
                "journal_id",
                "partner_id",
                "payment_reference",
            },
            "res.partner": {"name", "parent_id", "email", "is_company"},
            "product.product": {"name", "default_code"},
            "res.currency": {"name", "active"},
            "account.journal": {"name", "type"},
        }
        known = fields.get(model, set())
        if model == "account.payment" and int(self.version.split(".")[0]) < 18:
            known = (known - {"memo"}) | {"ref"}
        return known

    def _search(self, model: str, domain: list[Any]) -> list[int]:
        return [
            i
            for i, r in sorted(self.records.get(model, {}).items())
            if self._match(model, i, r, list(domain))
        ]

    def _match(self, model: str, record_id: int, record: dict[str, Any], domain: list[Any]) -> bool:
        def term(leaf: list[Any]) -> bool:
            name, op, value = leaf
            if name != "id" and name not in self._fields(model):
                raise OdooException(
                    "AppError", f"ValueError: Invalid field {model}.{name} in leaf {tuple(leaf)}"
                )
            actual = record_id if name == "id" else record.get(name, False)
            if op == "=":
                return bool(actual == value)
            if op == "!=":
                return bool(actual != value)
            if op == "in":
                return actual in value
            if op in (">=", "<="):
                if actual is False:
                    return False
                return bool(actual >= value if op == ">=" else actual <= value)
            if op in LIKE_OPERATORS:
                try:
                    return like(op, value, actual)
                except LikeError as error:
                    raise OdooException("AppError", str(error)) from None
            raise OdooException("AppError", f"ValueError: Invalid leaf {tuple(leaf)}")

        def evaluate(items: Iterator[Any]) -> bool:
            item = next(items)
            if item == "|":
                left, right = evaluate(items), evaluate(items)
                return left or right
            if item == "&":
                left, right = evaluate(items), evaluate(items)
                return left and right
            return term(item)

        if record.get("active") is False:
            return False
        items = iter(domain)
        result = True
        while True:
            try:
                result = evaluate(items) and result
            except StopIteration:
                return result

    def _create(self, model: str, values: dict[str, Any], ctx: dict[str, Any]) -> int:
        for name in values:
            if name not in self._fields(model) and model != "account.payment.register":
                raise OdooException(
                    "AppError", f"ValueError: Invalid field '{name}' on model '{model}'"
                )
        for name, target in MANY2ONE.items():
            if values.get(name) and values[name] not in self.records.get(target, {}):
                raise OdooException(
                    "ValidationError",
                    f"The operation cannot be completed: {name} refers to a record of "
                    f"{target} that does not exist.",
                )
        if model == "account.move":
            return self._create_move(values)
        if model == "account.payment.register":
            if ctx.get("active_model") != "account.move" or not ctx.get("active_ids"):
                raise OdooException(
                    "UserError",
                    "The register payment wizard should only be called on account.move or "
                    "account.move.line records.",
                )
            invoices = self._exist("account.move", ctx["active_ids"])
            for i in invoices:
                if self.records["account.move"][i]["state"] != "posted":
                    raise OdooException(
                        "UserError", "You can only register payment for posted journal entries."
                    )
            return self._insert(model, dict(values, invoice_ids=invoices))
        if model == "res.partner" and not values.get("name"):
            raise OdooException("ValidationError", "Contacts require a name")
        return self._insert(model, values)

    def _create_move(self, values: dict[str, Any]) -> int:
        if not values.get("partner_id"):
            raise OdooException(
                "UserError",
                "The field 'Customer' is required, please complete it to validate the "
                "Customer Invoice.",
            )
        total = 0.0
        lines = []
        for command in values.get("invoice_line_ids", []):
            if list(command[:2]) != [0, 0]:
                raise OdooException("AppError", f"ValueError: unsupported command {command[:2]}")
            line = dict(command[2])
            total += float(line.get("quantity", 1)) * float(line.get("price_unit", 0))
            lines.append(line)
        record: dict[str, Any] = {
            "name": "/",
            "state": "draft",
            "move_type": values.get("move_type", "entry"),
            "partner_id": values["partner_id"],
            "currency_id": values.get("currency_id")
            or self._search("res.currency", [["name", "=", "USD"]])[0],
            "ref": values.get("ref", False),
            "invoice_date": values.get("invoice_date", False),
            "invoice_date_due": values.get("invoice_date_due", False),
            "invoice_line_ids": [],
            "amount_untaxed": round(total, 2),
            "amount_total": round(total, 2),
            "amount_residual": round(total, 2),
            "payment_state": "not_paid",
        }
        move_id = self._insert("account.move", record)
        for line in lines:
            product = self.records["product.product"].get(line.get("product_id"), {})
            quantity = float(line.get("quantity", 1))
            price = float(line.get("price_unit", 0))
            values = {
                "move_id": move_id,
                "product_id": line.get("product_id", False),
                "quantity": quantity,
                "price_unit": price,
                "name": line.get("name") or product.get("name", ""),
                "display_type": "product",
                "discount": 0.0,
                "price_subtotal": round(quantity * price, 2),
            }
            record["invoice_line_ids"].append(self._insert("account.move.line", values))
        return move_id

    def _post(self, ids: list[int]) -> bool:
        for i in ids:
            move = self.records["account.move"][i]
            if move["state"] != "draft":
                raise OdooException(
                    "UserError", f"The entry {move['name']} (id {i}) must be in draft."
                )
            if not move["invoice_line_ids"]:
                raise OdooException("UserError", "You need to add a line before posting.")
            self.sequence["INV"] += 1
            move.update(state="posted", name=f"INV/2026/{self.sequence['INV']:05d}")
        return False  # as Odoo does, so that XML-RPC can marshal the answer

    def _pay(self, ids: list[int]) -> dict[str, Any]:
        memo_field = "memo" if self._fields("account.payment") >= {"memo"} else "ref"
        created = []
        for wizard_id in ids:
            wizard = self.records["account.payment.register"][wizard_id]
            for invoice_id in wizard["invoice_ids"]:
                invoice = self.records["account.move"][invoice_id]
                if invoice["amount_residual"] <= 0:
                    raise OdooException(
                        "UserError",
                        "You can't register a payment because there is nothing left to pay "
                        "on the selected journal items.",
                    )
                amount = float(wizard.get("amount") or invoice["amount_residual"])
                residual = round(max(invoice["amount_residual"] - amount, 0.0), 2)
                invoice.update(
                    amount_residual=residual, payment_state="paid" if residual == 0 else "partial"
                )
                self.sequence["PAY"] += 1
                created.append(
                    self._insert(
                        "account.payment",
                        {
                            "name": f"PBNK1/2026/{self.sequence['PAY']:05d}",
                            "amount": amount,
                            "state": "paid",
                            "date": wizard.get("payment_date", "2026-11-22"),
                            memo_field: wizard.get("communication", False),
                            "journal_id": wizard.get("journal_id")
                            or self._search("account.journal", [["type", "=", "bank"]])[0],
                            "partner_id": invoice["partner_id"],
                            "reconciled_invoice_ids": [invoice_id],
                        },
                    )
                )
        return {
            "type": "ir.actions.act_window",
            "res_model": "account.payment",
            "domain": [["id", "in", created]],
        }


class Handler(BaseHTTPRequestHandler):
    server: StandInServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/web/version":
            self._json(200, self._version())
        else:
            self._json(404, {"name": "werkzeug.exceptions.NotFound", "message": "Not Found"})

    def do_POST(self) -> None:
        odoo = self.server.odoo
        body = whole_body(self)
        if body is None:  # the client died mid-request: Odoo never took it
            return
        status = odoo.http_errors.pop(0) if odoo.http_errors else None
        if status is None and time.monotonic() < odoo.down_until:
            status = 503
        if self.path.startswith(("/xmlrpc/2/object", "/json/2/")) and status is None:
            status = odoo.http_error_on.pop(self._call_name(body), None)
        if status is not None:
            self._raw(status, "text/html", f"<h1>{status} Service Unavailable</h1>".encode())
            return
        try:
            if self.path.startswith("/xmlrpc/2/"):
                self._xmlrpc(self.path.rsplit("/", 1)[1], body)
            elif self.path.startswith("/json/2/"):
                self._json2(body)
            else:
                self._json(404, {"name": "werkzeug.exceptions.NotFound", "message": "Not Found"})
        except Dropped:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        except Stalled as stall:  # FakeOdoo's lock is released: other calls are answered
            self.server.stopped.wait(stall.seconds)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _call_name(self, body: bytes) -> str:
        """Return "model.method" of an object call, without doing it."""
        if self.path.startswith("/json/2/"):
            return ".".join(self._json2_parts()[3:5])
        params, _ = xmlrpc.client.loads(body)
        return f"{params[3]}.{params[4]}" if len(params) > 4 else ""

    def _json2_parts(self) -> list[str]:
        """Return the JSON-2 path's segments as Odoo routes them: WSGI decodes the path (PEP
        3333) before werkzeug splits it, so "res.partner%2Fcreate" is two segments."""
        return unquote(urlsplit(self.path).path).split("/")

    def _version(self) -> dict[str, Any]:
        major, minor = self.server.odoo.version.split(".")
        return {
            "server_version": self.server.odoo.version,
            "server_version_info": [int(major), int(minor), 0, "final", 0, ""],
            "server_serie": self.server.odoo.version,
            "protocol_version": 1,
        }

    def _xmlrpc(self, service: str, body: bytes) -> None:
        odoo = self.server.odoo
        params, method = xmlrpc.client.loads(body)
        try:
            if service == "common" and method == "version":
                result: Any = self._version()
            elif service == "common" and method == "authenticate":
                result = odoo.authenticate(*params[:3])
            elif service == "object" and method == "execute_kw":
                db, uid, password, model, name, *rest = params
                odoo.check_password(db, uid, password)
                args = rest[0] if rest else []
                kwargs = dict(rest[1]) if len(rest) > 1 else {}
                if name == "create" and not args:
                    # Odoo's call_kw reads args[0] to tell one record from many
                    raise OdooException("AppError", "IndexError: tuple index out of range")
                result = odoo.execute(model, name, args, kwargs)
            else:
                raise OdooException("AppError", f"KeyError: 'Method not found: {method}'")
            payload = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=False)
        except OdooException as error:
            code = FAULT_CODES.get(error.kind, 1)
            text = (
                error.message
                if code != 1
                else (
                    "Traceback (most recent call last):\n"
                    '  File "odoo/http.py", line 1, in dispatch\n'
                    f"{error.message}\n"
                )
            )
            payload = xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True)
        self._raw(200, "text/xml", payload.encode())

    def _json2(self, body: bytes) -> None:
        odoo = self.server.odoo
        parts = self._json2_parts()  # "", "json", "2", model, method
        if len(parts) != 5:
            self._json(404, {"name": "werkzeug.exceptions.NotFound", "message": "Not Found"})
            return
        model, method = parts[3], parts[4]
        auth = self.headers.get("Authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else ""
        if key not in odoo.api_keys or self.headers.get("X-Odoo-Database") != odoo.database:
            self._json(
                401,
                {
                    "name": "werkzeug.exceptions.Unauthorized",
                    "message": "Invalid apikey",
                    "arguments": ["Invalid apikey", 401],
                    "context": {},
                    "debug": "",
                },
            )
            return
        try:
            kwargs = json.loads(body or b"{}")
            result = odoo.execute(model, method, [], kwargs)
        except OdooException as error:
            name = (
                f"odoo.exceptions.{error.kind}"
                if error.kind in JSON2_STATUS
                else "builtins.ValueError"
            )
            self._json(
                JSON2_STATUS.get(error.kind, 500),
                {
                    "name": name,
                    "message": error.message,
                    "arguments": [error.message],
                    "context": {},
                    "debug": f"Traceback (most recent call last):\n{name}: {error.message}\n",
                },
            )
            return
        self._json(200, result)

    def _json(self, status: int, value: Any) -> None:
        self._raw(status, "application/json; charset=utf-8", json.dumps(value).encode())

    def _raw(self, status: int, content_type: str, payload: bytes) -> None:
        if self.server.odoo.latency_s:  # the work is done; the answer takes its time
            self.server.stopped.wait(self.server.odoo.latency_s)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, odoo: FakeOdoo) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.odoo = odoo
        self.stopped = threading.Event()  # ends stalls early when the stand-in stops

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a killed vaultd, a timed-out call) is not an error here."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def running_odoo(odoo: FakeOdoo | None = None) -> Iterator[StandInServer]:
    """Serve a FakeOdoo on 127.0.0.1 in a thread for the duration of the block."""
    server = StandInServer(odoo or FakeOdoo())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def main() -> None:  # pragma: no cover - run by hand: python tests/standins/odoo.py
    with running_odoo() as server:
        print(f"stand-in Odoo at {server.url} (db acme, user admin, password/API key secret)")
        threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
