"""What operators and orchestrators ask: liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import GatewayError
from gateway.server.forward import Forwarder
from gateway.server.scrape import merge
from gateway.server.state import STATE, GatewayState

log = structlog.get_logger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Liveness probes use this."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for new calls: not draining, below capacity, media ports free. Load balancers
    use this."""
    state = request.app[STATE]
    reason = state.not_ready_because
    body = {
        "status": reason or "ready",
        "calls": len(state.calls),
        "capacity": state.settings.max_calls,
    }
    return web.json_response(body, status=200 if reason is None else 503)


async def metrics(request: web.Request) -> web.Response:
    """This process's figures, or with ``serve --workers`` the whole host's (its workers'
    figures added up), unless a sibling asked for this worker's own (``scope=local``)."""
    state = request.app[STATE]
    own = generate_latest(state.metrics.registry)
    forwarder = state.forwarder
    local = request.query.get("scope") == "local" and (
        forwarder is not None and forwarder.is_forwarded(request)
    )
    body = own
    if state.settings.worker_group and state.stores.shared and forwarder is not None and not local:
        body = (await _host_metrics(state, forwarder, own.decode())).encode()
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


async def _host_metrics(state: GatewayState, forwarder: Forwarder, own: str) -> str:
    group = state.settings.worker_group
    me = state.calls.node.name
    texts = [own]
    try:
        siblings = [n for n in await state.stores.nodes.nodes() if n.group == group]
    except GatewayError:
        siblings = []  # the store is down: this worker's own figures are what there is
    for node in siblings:
        if node.name == me:
            continue
        try:
            texts.append(await forwarder.get_text(node.address, "/metrics?scope=local"))
        except Exception as exc:  # a sibling restarting is missing from one scrape, no more
            log.warning("metrics.worker_unreachable", worker=node.name, error=type(exc).__name__)
    return merge(texts, extra={"realtime_gateway_scrape_processes": len(texts)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
