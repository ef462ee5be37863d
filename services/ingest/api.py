"""Ingest's capture API: leads, activities, batches and webhook adapters.

Every 202 means the touchpoint and its lead.captured outbox row are committed;
every 4xx means nothing was written.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, which
# name dependencies local to ``router``.
import codecs
import inspect
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import (
    APIRouter,
    Body,
    Depends,
    Header,
    HTTPException,
    Request,
    Response,
    Security,
    status,
)
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, TypeAdapter, ValidationError

from baton_runtime.group_commit import GroupCommit
from baton_runtime.http import error_response
from baton_runtime.service import ServiceContext, context_of
from services.ingest import access, handlers
from services.ingest.access import ApiKey, KeyRing, RateLimiter, SignatureError
from services.ingest.adapters import (
    BUILT_IN_WEBHOOK,
    HubSpotSubmission,
    MappingFile,
    apply_mapping,
    hubspot_to_lead,
)
from services.ingest.domain import decoy_event_id, fingerprint, lead_id_for
from services.ingest.guard import NDJSON
from services.ingest.handlers import Capture, IdempotencyConflict, ReplayedSignature
from services.ingest.settings import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, IngestSettings
from services.ingest.submissions import (
    BATCH_RECORD,
    Accepted,
    ActivitySubmission,
    BatchResult,
    IdempotencyKey,
    LeadRecord,
    LeadSubmission,
    RecordResult,
    batch_record,
)

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                       description="A key from `baton keys create` or BATON_INGEST_API_KEYS.")
IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(IdempotencyKey)
ACCEPTED: TypeAdapter[Accepted] = TypeAdapter(Accepted)
API_KEY_HEADER = API_KEY.model.name.lower().encode("latin-1")
REPLAYED_HEADER = "Idempotent-Replayed"
REPLAYED_SIGNATURE = (
    "this signed request was received before and cannot be answered again: a resent "
    "request gets its first answer only if it was recorded under an idempotency key (the "
    "Idempotency-Key header or event_id; in a batch, every line's event_id). To send it as "
    "a new request, sign it with a new X-Baton-Timestamp")
ModelT = TypeVar("ModelT", bound=BaseModel)
EndpointT = TypeVar("EndpointT", bound=Callable[..., Coroutine[Any, Any, Accepted]])
DirectHandler = Callable[[Request], Coroutine[Any, Any, Response | None]]

log = structlog.get_logger(__name__)


Responses = dict[int | str, dict[str, Any]]
GUARDED: Responses = {
    400: error_response("The body could not be decoded (not UTF-8)."),
    413: error_response("The body is over the size limit; refused before it was read."),
    415: error_response("The body is not JSON in UTF-8 (NDJSON for /v1/batch)."),
    422: error_response("Invalid input: field-level errors in `detail`. Nothing was written."),
    429: error_response("Over this key's rate limit; retry after `Retry-After` seconds."),
    503: error_response("The database aborted a conflicting change; nothing was written, retry "
                "after `Retry-After` seconds."),
}
AUTHENTICATED: Responses = {
    401: error_response("No API key, or a signature that is missing, stale, wrong or replayed "
                        "(a signed request resent with the Idempotency-Key or event id it was "
                        "recorded under gets its first answer instead)."),
    403: error_response("Unknown or revoked API key."),
    **GUARDED,
}
CAPTURED: Responses = {
    **AUTHENTICATED,
    409: error_response("The idempotency key was used before with a different body."),
}


@dataclass(frozen=True)
class BatchLimits:
    """What one POST /v1/batch may hold: lines with a record, and bytes in all."""

    records: int = MAX_BATCH_RECORDS
    body_bytes: int = MAX_BATCH_BYTES


@dataclass(frozen=True)
class Caller:
    """An authenticated request: its key, and its signature to remember against replays."""

    key: ApiKey
    signature: str | None = None


@dataclass(frozen=True)
class Collaborators:
    """What the routes share beyond the service context: keys, rate limits, mappings, the
    transactions single captures commit in together, and the limits of a batch (which the
    OpenAPI document states)."""

    keys: KeyRing
    limiter: RateLimiter
    mappings: MappingFile
    commits: GroupCommit[handlers.Submitted, handlers.Outcome]
    batch: BatchLimits = BatchLimits()


def router(collaborators: Collaborators) -> APIRouter:
    """Return the capture routes, bound to this process's keys, limits and mappings."""
    routes = APIRouter(prefix="/v1", tags=["capture"])
    keys, limiter, mappings = collaborators.keys, collaborators.limiter, collaborators.mappings
    commits, batch = collaborators.commits, collaborators.batch

    def throttle(key: ApiKey, context: ServiceContext) -> None:
        wait = limiter.acquire(key, context.clock().timestamp())
        if wait:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded",
                                headers={"Retry-After": access.retry_after(wait)})

    def replayed(caller: Caller) -> HTTPException:
        """Return the 401 for a replayed signed request, its rate-limit token given back."""
        limiter.refund(caller.key)
        return HTTPException(status.HTTP_401_UNAUTHORIZED, REPLAYED_SIGNATURE)

    async def authenticated(
        request: Request,
        context: Annotated[ServiceContext, Depends(context_of)],
        x_api_key: Annotated[str | None, Security(API_KEY)] = None,
        x_baton_timestamp: Annotated[str | None, Header(
            description="Unix time of a signed request.")] = None,
        x_baton_signature: Annotated[str | None, Header(
            description="`v1=` + hex HMAC-SHA256 of `{timestamp}.{body}`, required for keys "
                        "created with --signed.")] = None,
    ) -> Caller:
        """Return the caller of a request with a valid key (and signature, if the key needs one)."""
        if x_api_key is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header",
                                headers={"WWW-Authenticate": "ApiKey"})
        key = keys.find(x_api_key)
        if key is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "unknown or revoked API key")
        if key.signing_secret is None:
            throttle(key, context)
            return Caller(key)
        settings: IngestSettings = context.settings
        try:
            access.verify_signature(
                key.signing_secret, timestamp=x_baton_timestamp, presented=x_baton_signature,
                body=await request.body(), now=context.clock().timestamp(),
                tolerance_seconds=settings.ingest_signature_tolerance_seconds)
        except SignatureError as error:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(error)) from None
        # Only now: whoever knows a signed key could otherwise spend its partner's quota
        # with unsigned requests. A replay is found when recorded, and gives its token back.
        throttle(key, context)
        return Caller(key, x_baton_signature)

    class CaptureRoute(APIRoute):
        """A single capture's route that calls ``authenticated`` and its endpoint itself
        when the request is valid.

        FastAPI's dependency solving cost about as much CPU as the rest of a capture. A
        request whose body validates as the endpoint's model and whose Idempotency-Key (if
        sent) is valid is answered here with what FastAPI would have passed the endpoint;
        any other request goes to FastAPI's own handler, which answers its errors as
        always. FastAPI documents the route from the endpoint's signature as before.
        """

        _direct: DirectHandler | None = None

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            """Return the handler: the direct path, FastAPI's for invalid requests."""
            fastapi_handler = super().get_route_handler()
            direct = self.direct()

            async def handle(request: Request) -> Response:
                return await direct(request) or await fastapi_handler(request)

            return handle

        def direct(self) -> DirectHandler:
            """Return the direct path: the answer to a valid request, None for any other."""
            if self._direct is not None:
                return self._direct
            endpoint = self.endpoint
            assert self.body_field is not None and self.status_code is not None
            body_model = self.body_field.field_info.annotation
            assert isinstance(body_model, type) and issubclass(body_model, BaseModel)
            assert set(inspect.signature(endpoint).parameters) == {
                "submission", "caller", "context", "response", "idempotency_key"}, (
                "the direct path passes exactly these")
            status_code = self.status_code

            async def direct(request: Request) -> Response | None:
                # Starlette's Headers scan and decode the list on every lookup, and raise
                # inside for each absent one; the first of repeated headers wins in both.
                headers = dict(reversed(request.scope["headers"]))
                idempotency_key = _header(headers, b"idempotency-key")
                submission = _valid_or_none(body_model, await request.body(), idempotency_key)
                if submission is None:
                    return None
                context = await context_of(request)
                caller = await authenticated(
                    request, context, _header(headers, API_KEY_HEADER) or None,
                    _header(headers, b"x-baton-timestamp"), _header(headers, b"x-baton-signature"))
                answered = Response()  # the endpoint adds headers to it, as to FastAPI's
                del answered.headers["content-length"]
                accepted = await endpoint(submission=submission, caller=caller,
                                          context=context, response=answered,
                                          idempotency_key=idempotency_key)
                response = Response(ACCEPTED.dump_json(accepted), status_code=status_code,
                                    media_type="application/json")
                response.headers.raw.extend(answered.headers.raw)
                return response

            self._direct = direct
            return direct

    def capture_route(path: str, *, summary: str) -> Callable[[EndpointT], EndpointT]:
        """Return a decorator that adds a single capture's endpoint as a CaptureRoute."""

        def add(endpoint: EndpointT) -> EndpointT:
            routes.add_api_route(path, endpoint, methods=["POST"], summary=summary,
                                 status_code=status.HTTP_202_ACCEPTED, response_model=Accepted,
                                 responses=CAPTURED, route_class_override=CaptureRoute)
            return endpoint

        return add

    async def record_one(context: ServiceContext, caller: Caller, capture: Capture,
                         response: Response) -> Accepted:
        """Record one capture (its transaction shared with concurrent ones) and answer for it."""

        signature = None if caller.signature is None else (caller.key.key_id, caller.signature)
        try:
            outcome = await commits.run(context.unit_of_work,
                                        handlers.Submitted(capture, signature))
        except ReplayedSignature:
            raise replayed(caller) from None
        except IdempotencyConflict:
            raise HTTPException(status.HTTP_409_CONFLICT, "this idempotency key was used "
                                "with a different request body") from None
        if outcome.replayed:
            response.headers[REPLAYED_HEADER] = "true"
        if outcome.resent:  # as when refused: resending a request must not spend the quota
            limiter.refund(caller.key)
        return outcome.accepted

    IdempotencyHeader = Annotated[IdempotencyKey | None, Header(
        alias="Idempotency-Key", description="Repeats with the same key and body get the "
        "first answer; with another body, 409. Defaults to the body's `event_id`.")]

    @capture_route("/leads", summary="Capture a form submission.")
    async def capture_lead(
        submission: LeadSubmission,
        caller: Annotated[Caller, Depends(authenticated)],
        context: Annotated[ServiceContext, Depends(context_of)],
        response: Response,
        idempotency_key: IdempotencyHeader = None,
    ) -> Accepted:
        """Commit the touchpoint and its lead.captured event, then answer 202."""
        if submission.honeypot:
            return decoy(submission, caller.key, idempotency_key)
        capture = handlers.lead_capture(submission, source=caller.key.source,
                                        now=context.clock(), idempotency_key=idempotency_key)
        return await record_one(context, caller, capture, response)

    @capture_route("/activities", summary="Capture an activity of a lead.")
    async def capture_activity(
        submission: ActivitySubmission,
        caller: Annotated[Caller, Depends(authenticated)],
        context: Annotated[ServiceContext, Depends(context_of)],
        response: Response,
        idempotency_key: IdempotencyHeader = None,
    ) -> Accepted:
        """Commit a page view, download, webinar, e-mail, inquiry or appointment; answer 202."""
        capture = handlers.activity_capture(submission, source=caller.key.source,
                                            now=context.clock(), idempotency_key=idempotency_key)
        return await record_one(context, caller, capture, response)

    @routes.post(
        "/batch", response_model=BatchResult, responses=batch_responses(batch),
        summary=f"Capture up to {batch.records:,} leads and activities, one JSON object a line.",
        # The body is read and split into lines by the endpoint, so FastAPI cannot document it.
        openapi_extra={"requestBody": batch_body(batch)},
    )
    async def capture_batch(
        request: Request,
        caller: Annotated[Caller, Depends(authenticated)],
        context: Annotated[ServiceContext, Depends(context_of)],
    ) -> BatchResult:
        """Record every valid line in one transaction; answer each line's outcome in order."""
        # Some editors start UTF-8 files with a byte order mark; /v1/leads accepts it too.
        body = (await request.body()).removeprefix(codecs.BOM_UTF8)
        lines = [(number, line) for number, line in enumerate(body.split(b"\n"), start=1)
                 if line.strip()]
        if not lines or len(lines) > batch.records:
            raise RequestValidationError([{
                "loc": ("body",), "type": "batch_size",
                "msg": f"send 1 to {batch.records} records"}])
        results: dict[int, RecordResult] = {}
        captures: list[tuple[int, Capture]] = []
        now = context.clock()
        for number, line in lines:
            try:
                parsed = batch_record(line)
            except ValidationError as error:
                results[number] = RecordResult(line=number, status=422, errors=_errors(error))
                continue
            if isinstance(parsed, LeadRecord):
                if parsed.honeypot:
                    told = decoy(parsed, caller.key, None)
                    results[number] = RecordResult(line=number, status=202,
                                                   lead_id=told.lead_id, event_id=told.event_id)
                    continue
                capture = handlers.lead_capture(parsed, source=caller.key.source, now=now,
                                                idempotency_key=None)
            else:
                capture = handlers.activity_capture(parsed, source=caller.key.source, now=now,
                                                    idempotency_key=None)
            captures.append((number, capture))
        captures = handlers.recording_order(captures)
        try:
            async with context.unit_of_work() as uow:
                # A batch's event ids are signed with it: resent, each line gets its first
                # answer (a 409 again for an id another record holds), unless one would be
                # recorded anew, which refuses the whole batch.
                resent = caller.signature is not None and not await handlers.signature_is_new(
                    uow, caller.key.key_id, caller.signature)
                if resent:
                    outcomes = await handlers.earlier_answers(uow, [c for _, c in captures])
                else:
                    outcomes = [await handlers.record_or_conflict(uow, c) for _, c in captures]
                for (number, _), outcome in zip(captures, outcomes, strict=True):
                    results[number] = (
                        RecordResult(line=number, status=409, errors=[{
                            "loc": ["event_id"], "type": "idempotency_conflict",
                            "msg": "this event id was used with a different record"}])
                        if outcome is None else
                        RecordResult(line=number, status=202, lead_id=outcome.accepted.lead_id,
                                     event_id=outcome.accepted.event_id))
                await uow.commit()
        except ReplayedSignature:
            raise replayed(caller) from None
        if resent:  # as in record_one
            limiter.refund(caller.key)
        ordered = [results[number] for number in sorted(results)]
        accepted = sum(1 for result in ordered if result.status == 202)
        return BatchResult(accepted=accepted, rejected=len(ordered) - accepted, results=ordered)

    async def hubspot_caller(
        request: Request,
        context: Annotated[ServiceContext, Depends(context_of)],
        x_hubspot_signature_v3: Annotated[str | None, Header()] = None,
        x_hubspot_request_timestamp: Annotated[str | None, Header()] = None,
    ) -> Caller:
        """Return the HubSpot key whose secret signed the request; refuse it otherwise."""
        candidates = keys.signing_keys(access.HUBSPOT_SOURCE)
        if not candidates:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "the HubSpot adapter is not set up")
        settings: IngestSettings = context.settings
        url = str(request.url)
        if settings.ingest_public_origin:  # HubSpot signs the URL it called, not ours
            url = settings.ingest_public_origin + url.removeprefix(
                f"{request.url.scheme}://{request.url.netloc}")
        body = await request.body()
        problem = "HubSpot signature does not match"
        for key in candidates:
            assert key.signing_secret is not None  # signing_keys returns those only
            try:
                access.verify_hubspot(
                    key.signing_secret, method=request.method, uri=url, body=body,
                    timestamp=x_hubspot_request_timestamp, presented=x_hubspot_signature_v3,
                    now=context.clock().timestamp(),
                    tolerance_seconds=settings.ingest_signature_tolerance_seconds)
            except SignatureError as error:
                problem = str(error)
                continue
            throttle(key, context)
            # Not remembered as a replay: HubSpot redelivers identical requests, and
            # those must get the first answer (the submission's idempotency key).
            return Caller(key)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, problem)

    @routes.post(
        f"/webhooks/{BUILT_IN_WEBHOOK}", status_code=status.HTTP_202_ACCEPTED,
        response_model=Accepted,
        summary="Capture a HubSpot form submission (v3 signature, 5-minute tolerance).",
        responses={**GUARDED,
                   401: error_response("Missing, stale or wrong HubSpot v3 signature."),
                   404: error_response("No HubSpot signing secret is set up (`baton keys create "
                               "hubspot --signing-secret ...`)."),
                   409: CAPTURED[409]},
    )
    async def hubspot_webhook(
        submission: HubSpotSubmission,
        request: Request,
        caller: Annotated[Caller, Depends(hubspot_caller)],
        context: Annotated[ServiceContext, Depends(context_of)],
        response: Response,
    ) -> Accepted:
        """Capture a verified HubSpot submission as a lead; redeliveries are recognised.

        An optional field HubSpot sent that no lead may hold (a phone "不明", a band too
        long) is left out rather than the lead refused: HubSpot would not send it again.
        """
        lead = _validated(LeadSubmission, hubspot_to_lead(
            submission, mappings.hubspot_forms, fallback_event_id=fingerprint(
                await request.body())), optional=HUBSPOT_OPTIONAL)
        capture = handlers.lead_capture(lead, source=caller.key.source, now=context.clock(),
                                        idempotency_key=None)
        return await record_one(context, caller, capture, response)

    @routes.post(
        "/webhooks/{adapter}", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted,
        responses={**CAPTURED, 404: error_response("No adapter of that name in the mapping file.")},
        summary="Capture another tool's webhook through the field-mapping file.",
    )
    async def mapped_webhook(
        adapter: str,
        payload: Annotated[dict[str, Any], Body(description="The tool's JSON payload.")],
        caller: Annotated[Caller, Depends(authenticated)],
        context: Annotated[ServiceContext, Depends(context_of)],
        response: Response,
        idempotency_key: IdempotencyHeader = None,
    ) -> Accepted:
        """Translate the payload with the adapter's mapping, then capture it."""
        mapping = mappings.adapters.get(adapter)
        if mapping is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no adapter named {adapter!r}")
        if mapping.sources is not None and caller.key.source not in mapping.sources:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"source {caller.key.source!r} may not use this adapter")
        body = apply_mapping(mapping, payload)
        if mapping.kind == "lead":
            lead = _validated(LeadSubmission, body)
            if lead.honeypot:
                return decoy(lead, caller.key, idempotency_key)
            capture = handlers.lead_capture(lead, source=caller.key.source, now=context.clock(),
                                            idempotency_key=idempotency_key)
        else:
            capture = handlers.activity_capture(_validated(ActivitySubmission, body),
                                                source=caller.key.source, now=context.clock(),
                                                idempotency_key=idempotency_key)
        return await record_one(context, caller, capture, response)

    return routes


def decoy(submission: LeadSubmission, key: ApiKey, idempotency_key: str | None) -> Accepted:
    """Return what a bot that filled the honeypot is told: a 202 for nothing stored, the
    same each time it repeats the request."""
    # A batch line's kind is left out, as for real captures: a line is the record sent alone.
    content = submission.__pydantic_serializer__.to_json(submission, exclude={"kind"})
    return Accepted(lead_id=lead_id_for(submission.email), event_id=decoy_event_id(
        key.key_id, idempotency_key or submission.event_id, content))


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    """Return a header's value (``name`` in lower case) as Starlette decodes it, or None."""
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


def _valid_or_none(model: type[ModelT], body: bytes, idempotency_key: str | None
                   ) -> ModelT | None:
    """Return ``body`` as ``model`` if it and the Idempotency-Key are valid, else None."""
    try:
        if idempotency_key is not None:
            IDEMPOTENCY_KEY.validate_python(idempotency_key)
        return model.model_validate_json(body)
    except ValidationError:
        return None


# What a HubSpot submission may lose rather than be refused for: all but who and what.
HUBSPOT_OPTIONAL = frozenset(LeadSubmission.model_fields) - {"email", "touchpoint", "event_id",
                                                              "source", "honeypot"}


def _validated(model: type[ModelT], body: dict[str, Any],
               optional: frozenset[str] = frozenset()) -> ModelT:
    """Return ``body`` validated as ``model``, without those of its ``optional`` fields that
    are invalid; raise a 422 naming the submission's fields if any other is."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        invalid = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
        if not invalid or not invalid <= optional:
            raise RequestValidationError(_errors(error, prefix=("body",))) from None
    log.info("invalid optional fields left out", fields=sorted(invalid))
    return _validated(model, {name: value for name, value in body.items()
                              if name not in invalid})


def _errors(error: ValidationError, prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Return a validation error's field-level details in FastAPI's JSON shape."""
    return [{"loc": [*prefix, *item["loc"]], "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False, include_context=False,
                                     include_input=False)]


BATCH_EXAMPLE = "\n".join(json.dumps(line, ensure_ascii=False) for line in (
    {"kind": "lead", "email": "hanako.sato@example.co.jp", "name": "佐藤 花子",
     "company": "Example Corp", "touchpoint": {"type": "inquiry.demo_request"}},
    {"kind": "activity", "email": "hanako.sato@example.co.jp", "type": "page_view.pricing",
     "asset_id": "/pricing"},
))


def batch_body(limits: BatchLimits) -> dict[str, Any]:
    """Return the OpenAPI request body of POST /v1/batch: its lines' schema, limits as set."""
    return {"required": True, "content": {NDJSON: {"schema": {
        "type": "array", "minItems": 1, "maxItems": limits.records,
        "items": {**_standalone(BATCH_RECORD.json_schema()),
                  "description": "A lead or an activity, as its `kind` says."},
        "description": (
            f"NDJSON in UTF-8: one JSON object a line, 1 to {limits.records:,} lines "
            f"(BATON_INGEST_MAX_BATCH_RECORDS; blank lines are skipped) and at most "
            f"{limits.body_bytes:,} bytes in all (BATON_INGEST_MAX_BATCH_BYTES). A line is a "
            "lead, `\"kind\": \"lead\"` with the fields of a POST /v1/leads body, or an "
            "activity, `\"kind\": \"activity\"` with the fields of a POST /v1/activities "
            "body. The schema shows the lines as an array: send each object on a line of its "
            "own, not a JSON array. Each line is answered on its own in the 200's `results`; "
            "its `event_id` is its idempotency key."),
    }, "example": BATCH_EXAMPLE}}}


def batch_responses(limits: BatchLimits) -> Responses:
    """Return the OpenAPI responses of POST /v1/batch, limits as set."""
    return {
        **AUTHENTICATED,
        200: {"description": "Each line's outcome, in line order. The valid lines are "
              "recorded together, whatever the other lines are."},
        413: error_response(f"The body is over {limits.body_bytes:,} bytes "
                            "(BATON_INGEST_MAX_BATCH_BYTES); refused before it was read. "
                            "Send the lines in smaller batches."),
        422: error_response(f"No line, or over {limits.records:,} lines "
                            "(BATON_INGEST_MAX_BATCH_RECORDS): nothing was written. An invalid "
                            "line is refused alone, in the 200's `results`."),
    }


def _standalone(schema: dict[str, Any]) -> dict[str, Any]:
    """Return a JSON schema with its definitions written out where it refers to them, so
    that it means the same anywhere in an OpenAPI document.

    A discriminator goes too: it names its choices by reference, and a document's tools
    do not consider inline ones. Each choice still holds its ``kind`` as a ``const``.
    """
    definitions = schema.get("$defs", {})

    def written_out(node: Any) -> Any:
        if isinstance(node, list):
            return [written_out(item) for item in node]
        if not isinstance(node, dict):
            return node
        reference = node.get("$ref")
        if reference is not None:
            node = {**definitions[reference.removeprefix("#/$defs/")],
                    **{key: value for key, value in node.items() if key != "$ref"}}
        return {key: written_out(value) for key, value in node.items()
                if key != "$defs" and not (key == "discriminator" and "oneOf" in node)}

    standalone: dict[str, Any] = written_out(schema)
    return standalone
