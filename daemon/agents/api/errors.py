"""Every error as JSON, `{"error": message, ...}`, with the status that fits.

401 Unauthorized (with WWW-Authenticate)     403 a group the skill requires is missing
404 no such skill, run or path               409 the run is not in a state that runs, or
                                             an unfinished run has the same identity key
422 bad inputs, with every problem listed    429 rate limit or cooldown (Retry-After)
503 no knowledge graph built yet (kg_routes.py)

A run of a caller that shares none of this caller's groups is a 404, worded exactly as a run
that does not exist (run_access.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from daemon.agents.api.auth import Unauthorized
from daemon.agents.kg.store import KgError
from daemon.agents.skills.run_errors import Duplicate
from daemon.agents.skills.runs import InputsInvalid, RunError, Throttled
from daemon.agents.skills.store import TransitionRefused
from daemon.core.timestamps import iso

log = logging.getLogger("vaultd.api")


def error_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def install(api: FastAPI) -> None:
    """Register the JSON error handlers on an application."""

    @api.exception_handler(Unauthorized)
    async def unauthorized(request: Request, error: Unauthorized) -> JSONResponse:
        client = request.client.host if request.client else "?"
        log.info("API: 401 for %s %s from %s: %s", request.method, request.url.path, client, error)
        return error_response(401, str(error), headers={"WWW-Authenticate": error.challenge})

    @api.exception_handler(RunError)
    async def run_error(_request: Request, error: RunError) -> JSONResponse:
        if isinstance(error, InputsInvalid):
            problems = [{"field": where, "message": why} for where, why in error.problems]
            return error_response(error.status, str(error), problems=problems)
        if isinstance(error, Duplicate):
            if error.run_id is None:
                return error_response(error.status, str(error))
            where = {"Location": f"/api/v1/runs/{error.run_id}"}
            return error_response(error.status, str(error), headers=where, run_id=error.run_id)
        if isinstance(error, Throttled):
            wait = max(1, math.ceil((error.retry_at - datetime.now(UTC)).total_seconds()))
            return error_response(
                error.status,
                str(error),
                headers={"Retry-After": str(wait)},
                retry_at=iso(error.retry_at),
            )
        return error_response(error.status, str(error))

    @api.exception_handler(KgError)
    async def graph_error(_request: Request, error: KgError) -> JSONResponse:
        return error_response(error.status, str(error))

    @api.exception_handler(TransitionRefused)
    async def transition_refused(_request: Request, error: TransitionRefused) -> JSONResponse:
        # Two callers raced to execute the same run; the second one loses.
        return error_response(409, str(error))

    @api.exception_handler(RequestValidationError)
    async def request_invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": "/".join(str(part) for part in item["loc"]), "message": item["msg"]}
            for item in error.errors()
        ]
        listed = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return error_response(422, f"request invalid: {listed}", problems=problems)

    @api.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), headers=error.headers)

    @api.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("API: %s %s failed", request.method, request.url.path, exc_info=error)
        return error_response(500, "internal error; the server's log has the details")
