"""Live alerts: ``/api/v1/alerts`` (list, acknowledge, the Server-Sent Events stream),
``/api/v1/alert-rules`` and ``/api/v1/webhooks``, thin over ``urbansec.services.alerts``.

The stream (``GET /alerts/stream``, ``text/event-stream``): ``event: alert`` when an alert is
raised, ``event: update`` when its value changes (at most every 5 s), it clears or someone
acknowledges it; ``data:`` the alert JSON (with ``change``); ``id:`` its sequence number;
``retry: 2000``; a comment heartbeat every 15 s. ``Last-Event-ID`` (the header EventSource
sends when it reconnects, or ``?last_event_id=``) resumes with every alert changed since, from
the store. The stream starts with a bare ``id:`` line carrying the current sequence number, so
even a client that received nothing yet resumes from the right place.

EventSource cannot send an ``Authorization`` header, and the dashboard keeps its bearer token
in ``sessionStorage`` (no cookie), so this route alone also accepts the access token as
``?access_token=``. Only short-lived access tokens are accepted there (never API keys or
refresh tokens), because a URL can end up in logs.

Without a live source (no ``URBANSEC_MQTT_URL`` and no engine in this process) the stream
sends what is stored since ``Last-Event-ID`` and ends; EventSource reconnects after ``retry``,
which degrades to polling every 2 s rather than to silence.

GZip: Starlette's ``GZipMiddleware`` leaves ``text/event-stream`` responses alone (its
``DEFAULT_EXCLUDED_CONTENT_TYPES``), so events are not held back in a compression buffer;
``tests/alerts`` checks an event arrives while the stream stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from urbansec.api.deps import allowed, get_engine, get_principal
from urbansec.services import alerts as service
from urbansec.services.access import Principal, require
from urbansec.services.alert_delivery import AlertBus, Broadcaster, WebhookWorker

log = logging.getLogger("urbansec.api.alerts")

HEARTBEAT_SECONDS = 15.0
DISCONNECT_CHECK_SECONDS = 1.0
RETRY_MILLISECONDS = 2000
DbId = Annotated[int, Path(ge=1, le=2**53)]


# --- the process's live source ----------------------------------------------------------------

def broadcaster_of(app: FastAPI) -> Broadcaster:
    broadcaster = getattr(app.state, "alert_broadcaster", None)
    if broadcaster is None:
        broadcaster = app.state.alert_broadcaster = Broadcaster()
    return broadcaster


def attach_local_engine(app: FastAPI) -> Broadcaster:
    """The engine runs in this process (``urbansec serve --ingest``): it hands its events
    to the returned broadcaster, and the stream is live even without a broker."""
    app.state.alert_engine_local = True
    return broadcaster_of(app)


def _live(app: FastAPI) -> bool:
    return bool(getattr(app.state, "alert_bus", None)
                or getattr(app.state, "alert_engine_local", False))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Bind the broadcaster to the loop; subscribe to the alert topic when a broker is
    configured; run a webhook worker (acknowledgements are queued here)."""
    settings = app.state.settings
    broadcaster = broadcaster_of(app)
    broadcaster.bind(asyncio.get_running_loop())
    bus = worker = None
    if settings.mqtt_url:
        try:
            bus = AlertBus(settings.mqtt_url, broadcaster.publish_threadsafe,
                           topic=settings.alert_topic).start()
        except Exception as exc:  # a bad URL must not stop the API; the stream polls then
            log.warning("alert stream: cannot use the broker %s (%s)", settings.mqtt_url, exc)
            bus = None
        if settings.alert_webhooks_in_api:
            worker = WebhookWorker(app.state.engine,
                                   max_attempts=settings.webhook_max_attempts).start()
    app.state.alert_bus = bus
    try:
        yield
    finally:
        app.state.alert_bus = None
        if bus is not None:
            bus.stop()
        if worker is not None:
            worker.stop()


# the lifespan is merged into the app's when the router is included (as the dashboard's is)
router = APIRouter(tags=["alerts"], lifespan=lifespan)


def _publish(request: Request, event: service.AlertEvent) -> None:
    """An acknowledgement made here: to this process's subscribers, and over MQTT to the
    other processes'."""
    broadcaster_of(request.app).publish_threadsafe([event])
    bus = getattr(request.app.state, "alert_bus", None)
    if bus is not None:
        bus.publish([event])


# --- alerts -----------------------------------------------------------------------------------

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AckBody(Strict):
    note: Annotated[str, Field(max_length=2000)] | None = None


@router.get("/alerts")
def list_alerts(status_: Annotated[Literal["open", "acknowledged", "cleared", "all"], Query(
                    alias="status", description="open: not cleared (acknowledged included)")
                ] = "open",
                limit: Annotated[int, Query(ge=1, le=service.MAX_LIST)] = 100,
                engine: Engine = Depends(get_engine),
                _principal: Principal = Depends(allowed("sensors:read"))) -> dict[str, Any]:
    return {"alerts": service.list_alerts(engine, status_, limit)}


def stream_principal(request: Request, engine: Engine = Depends(get_engine),
                     access_token: Annotated[str | None, Query(max_length=200)] = None
                     ) -> Principal:
    """The caller of the stream: ``?access_token=`` (EventSource sends no headers), else
    the usual headers."""
    if access_token:
        from urbansec.services import identity

        principal = identity.principal_from_token(engine, access_token)
    else:
        principal = get_principal(request, engine)
    require(principal, "sensors:read")
    return principal


stream_principal.permission = "sensors:read"  # type: ignore[attr-defined]


def _format(event: service.AlertEvent) -> str:
    data = json.dumps({**event.alert, "change": event.change}, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.event}\ndata: {data}\n\n"


@router.get("/alerts/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_alerts(request: Request,
                        last_event_id: Annotated[str | None, Header()] = None,
                        last_event_query: Annotated[int | None, Query(
                            alias="last_event_id", ge=0)] = None,
                        engine: Engine = Depends(get_engine),
                        _principal: Principal = Depends(stream_principal)
                        ) -> StreamingResponse:
    resume: int | None = last_event_query
    if last_event_id is not None:
        try:
            resume = int(last_event_id)
        except ValueError:
            from urbansec.errors import UsageError

            raise UsageError("Last-Event-ID must be a sequence number") from None
    broadcaster = broadcaster_of(request.app)
    live = _live(request.app)
    # subscribe before reading the store, so nothing committed meanwhile falls between
    subscription = broadcaster.subscribe() if live else None
    try:
        current = await run_in_threadpool(service.last_sequence, engine)
        backlog = (await run_in_threadpool(service.changes_since, engine, resume)
                   if resume is not None else [])
    except BaseException:
        if subscription is not None:
            broadcaster.unsubscribe(subscription)
        raise

    async def events() -> AsyncIterator[str]:
        sent = resume if resume is not None else -1
        try:
            yield f"retry: {RETRY_MILLISECONDS}\nid: {max(current, sent)}\n\n"
            for event in backlog:
                sent = max(sent, event.seq)
                yield _format(event)
            if subscription is None:
                return
            quiet = 0.0
            while True:
                try:
                    event = await asyncio.wait_for(subscription.queue.get(),
                                                   DISCONNECT_CHECK_SECONDS)
                except TimeoutError:
                    # a gone client is otherwise noticed only when a write fails
                    if await request.is_disconnected():
                        return
                    quiet += DISCONNECT_CHECK_SECONDS
                    if quiet >= HEARTBEAT_SECONDS:
                        quiet = 0.0
                        yield ": heartbeat\n\n"
                    continue
                if event is None:
                    return  # this client fell behind: it reconnects and resumes
                if event.seq <= sent:
                    continue
                yield _format(event)
        finally:
            if subscription is not None:
                broadcaster.unsubscribe(subscription)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache",
                                      "x-accel-buffering": "no"})


@router.post("/alerts/{alert_id}/ack")
def acknowledge(request: Request, alert_id: DbId,
                body: Annotated[AckBody | None, Body()] = None,
                engine: Engine = Depends(get_engine),
                principal: Principal = Depends(allowed("sensors:write"))) -> dict[str, Any]:
    event = service.acknowledge(engine, principal, alert_id, body.note if body else None)
    _publish(request, event)
    return event.alert


@router.get("/alerts/{alert_id}")
def get_alert(alert_id: DbId, engine: Engine = Depends(get_engine),
              _principal: Principal = Depends(allowed("sensors:read"))) -> dict[str, Any]:
    return service.get_alert(engine, alert_id)


# --- rules ------------------------------------------------------------------------------------

RuleKind = Literal["threshold", "trend", "silent", "light_failed", "geofence"]
SeverityName = Literal["info", "warning", "critical"]
ZoneKeys = Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]],
                     Field(max_length=1000)]


class RuleCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=service.MAX_NAME)]
    kind: RuleKind
    severity: SeverityName = "warning"
    params: dict[str, Any] = Field(default_factory=dict, description=(
        "threshold: metric (density|occupancy|occupancy_share|flow|los), threshold, "
        "hysteresis, zone_types; trend: threshold (persons/m²), within_minutes, window, "
        "min_points; silent: minutes, datastreams; light_failed: min_occupancy; geofence: "
        "fence (GeoJSON Polygon, lon/lat), trigger (enter|exit|dwell), dwell_minutes, "
        "device_kinds, fence_id"))
    zones: ZoneKeys | None = Field(None, description="zone keys; null: every zone")
    enabled: bool = True


class RuleUpdate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=service.MAX_NAME)] | None = None
    severity: SeverityName | None = None
    params: dict[str, Any] | None = None
    zones: ZoneKeys | None = None
    enabled: bool | None = None


@router.get("/alert-rules")
def list_rules(engine: Engine = Depends(get_engine),
               _principal: Principal = Depends(allowed("sensors:read"))) -> dict[str, Any]:
    return {"rules": service.list_rules(engine)}


@router.post("/alert-rules", status_code=status.HTTP_201_CREATED)
def create_rule(body: RuleCreate, engine: Engine = Depends(get_engine),
                principal: Principal = Depends(allowed("sensors:write"))) -> dict[str, Any]:
    return service.create_rule(engine, principal, name=body.name, kind=body.kind,
                               params=body.params, severity=body.severity, zones=body.zones,
                               enabled=body.enabled)


@router.patch("/alert-rules/{rule_id}")
def update_rule(rule_id: DbId, body: RuleUpdate, engine: Engine = Depends(get_engine),
                principal: Principal = Depends(allowed("sensors:write"))) -> dict[str, Any]:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for name in ("name", "severity", "params", "enabled"):
        if name in changes and changes[name] is None:
            from urbansec.errors import UsageError

            raise UsageError(f"{name} cannot be null")
    return service.update_rule(engine, principal, rule_id, changes)


@router.delete("/alert-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(rule_id: DbId, engine: Engine = Depends(get_engine),
                principal: Principal = Depends(allowed("sensors:write"))) -> None:
    service.delete_rule(engine, principal, rule_id)


# --- webhooks ---------------------------------------------------------------------------------

class WebhookCreate(Strict):
    url: Annotated[str, Field(min_length=8, max_length=1000)]
    secret: Annotated[str, Field(min_length=16, max_length=200, description=(
        "signs each delivery: X-Urbansec-Signature: sha256=HMAC-SHA256(secret, body)"))]
    events: list[Literal["raised", "updated", "cleared", "acknowledged"]] | None = Field(
        None, min_length=1, max_length=4)
    min_severity: SeverityName = "info"


@router.get("/webhooks")
def list_webhooks(engine: Engine = Depends(get_engine),
                  _principal: Principal = Depends(allowed("sensors:write"))
                  ) -> dict[str, Any]:
    return {"webhooks": service.list_webhooks(engine)}


@router.post("/webhooks", status_code=status.HTTP_201_CREATED)
def create_webhook(body: WebhookCreate, engine: Engine = Depends(get_engine),
                   principal: Principal = Depends(allowed("sensors:write"))) -> dict[str, Any]:
    return service.create_webhook(engine, principal, url=body.url, secret=body.secret,
                                  events=body.events, min_severity=body.min_severity)


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: DbId, engine: Engine = Depends(get_engine),
                   principal: Principal = Depends(allowed("sensors:write"))) -> None:
    service.delete_webhook(engine, principal, webhook_id)


@router.get("/webhooks/{webhook_id}/deliveries")
def webhook_deliveries(webhook_id: DbId,
                       limit: Annotated[int, Query(ge=1, le=service.MAX_LIST)] = 100,
                       engine: Engine = Depends(get_engine),
                       _principal: Principal = Depends(allowed("sensors:write"))
                       ) -> dict[str, Any]:
    return {"deliveries": service.webhook_deliveries(engine, webhook_id, limit)}
