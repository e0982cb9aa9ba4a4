"""The knowledge graph's endpoints of /api/v1: `GET /kg/neighborhood`, `/kg/search` and
`/kg/context`, authenticated like the rest of the API and read-only (daemon/agents/kg/reads.py).

REF is what `vaultd kg neighborhood` takes: a note path, a `[[link]]`, a vaultd id, a #tag,
a partner's name or an invoice number. A REF naming no node is a 404, one naming several a
422 listing them, and a vault whose graph was never built a 503 saying how to build it.
A skill run the caller may not see (run_access.py) is not in the graph it is answered from.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from daemon.agents.api.caller import Caller
from daemon.agents.api.routes import PREFIX, CallerDep, api_state, authenticated, error_statuses
from daemon.agents.kg.query import MAX_DEPTH
from daemon.agents.kg.reads import MAX_RESULTS, GraphReads, Hide
from daemon.agents.kg.store import KgError

router = APIRouter(prefix=f"{PREFIX}/kg", dependencies=[Depends(authenticated)], tags=["kg"])

Ref = Annotated[str, Query(description="a note path, [[link]], vaultd id, #tag or name")]
Depth = Annotated[int, Query(ge=1, le=MAX_DEPTH, description="edges to follow")]


def _graph(request: Request) -> GraphReads:
    graph = api_state(request).graph
    if graph is None:
        raise KgError("this server has no knowledge graph", status=503)
    return graph


def _hide(request: Request, caller: Caller) -> Hide:
    access = api_state(request).access
    return lambda run_ids: access.unseen(caller, run_ids)


@router.get("/neighborhood", responses=error_statuses(404, 422, 503))
def neighborhood(
    request: Request,
    caller: CallerDep,
    ref: Ref,
    depth: Depth = 1,
    edge: Annotated[str | None, Query(description="only edges of this type")] = None,
) -> dict[str, Any]:
    """What REF is linked to within `depth` edges (either direction), with the evidence of
    every node and edge: the note, its SHA-256 when read, the line range and the quote."""
    return _graph(request).neighborhood(ref, depth=depth, edge=edge, hide=_hide(request, caller))


@router.get("/search", responses=error_statuses(422, 503))
def search(
    request: Request,
    caller: CallerDep,
    q: Annotated[str, Query(description="the words to find (all of them)")],
    limit: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 20,
) -> dict[str, Any]:
    """The notes matching every word of `q`, best first (`ranking` says how: full text,
    BM25), each with its node key, path, score and a snippet."""
    return _graph(request).search(q, limit=limit, hide=_hide(request, caller))


@router.get("/context", responses=error_statuses(404, 422, 503))
def context(request: Request, caller: CallerDep, ref: Ref, depth: Depth = 1) -> dict[str, Any]:
    """REF's neighborhood with every evidence row checked against the vault now: `stale`
    when its note (or ledger row) changed since the graph was built, and where it is now."""
    return _graph(request).context(ref, depth=depth, hide=_hide(request, caller))
