"""The HTTP API of `ledger serve` (issue 12): versioned JSON over the store, with roles.

FastAPI (on Starlette, served by uvicorn): the request and response shapes are pydantic models
already at home here, the OpenAPI document at `/openapi.json` is generated from the routes, and
dependencies carry the bearer-token check. Every answer is the JSON the CLI prints for the
same question, built by the same code (`ledger.application.queries`, `ledger.statements`,
`ledger.application.feed`, `ledger.application.audit`).

The ledger (an eventsourcing application with a working set in memory) is not thread-safe:
one lock serialises its use; before each read the working set catches up with what other
processes wrote (`UnitOfWork.catch_up`, one query when nothing changed). Routes are plain
functions, run by Starlette in its thread pool, so the event loop stays free.

Status codes: 401 missing/unknown/revoked token, 403 a role without the right, 413 a body over
`max_body`, 400 a malformed request (`invalid_input`), 422 a contract rejection (its code),
503 the store unreachable. Error bodies: `{"error": code, "message": text}`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.api import tokens
from ledger.api.metrics import Metrics
from ledger.application import schema
from ledger.errors import LedgerError, StoreUnavailableError

log = logging.getLogger("ledger.api")
T = TypeVar("T")

API_VERSION = "1"
DEFAULT_MAX_BODY = 10 * 1024 * 1024  # bytes of a POST /v1/commands body (10 MiB)


class ApiError(Exception):
    """An answer other than 200, with the contract's error code."""

    def __init__(self, status: int, code: str, message: str,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra = extra or {}


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status,
                        headers=headers)


ERROR_BODY = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request (`invalid_input`)", **ERROR_BODY},
    401: {"description": "Missing, unknown or revoked token", **ERROR_BODY},
    403: {"description": "The token's role lacks the right", **ERROR_BODY},
    422: {"description": "A contract rejection (its error code)", **ERROR_BODY},
    503: {"description": "The store cannot be reached (`store_unavailable`)", **ERROR_BODY},
}
CSV_OR_JSON: dict[str, Any] = {"content": {"application/json": {}, "text/csv": {}}}


def parse_time(value: str | None, field: str) -> datetime | None:
    """Parse a query parameter's RFC 3339 time; 400 `invalid_input` naming the field."""
    if value is None:
        return None
    from ledger.times import parse_at

    try:
        return parse_at(value)
    except ValueError as error:
        raise ApiError(400, "invalid_input", f"{field}: {error}") from None


def require_time(value: str | None, field: str) -> datetime:
    found = parse_time(value, field)
    if found is None:
        raise ApiError(400, "invalid_input", f"{field}: required (an RFC 3339 time)")
    return found


def wants_csv(request: Request, fmt: str | None) -> bool:
    """`format=csv` or `format=json`; without it, `Accept: text/csv` asks for CSV."""
    if fmt is not None:
        if fmt not in ("csv", "json"):
            raise ApiError(400, "invalid_input", f"format: {fmt!r} is not one of csv, json")
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


_bearer = HTTPBearer(auto_error=False, description="A token from `ledger token create`.")


def allowed(right: str) -> Callable[..., str]:
    """Return a dependency that lets a token in force whose role has `right` through."""

    def check(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                       Depends(_bearer)]) -> str:
        if credentials is None or not credentials.credentials:
            raise ApiError(401, "unauthorized", "missing bearer token")
        store: Store = request.app.state.store
        with _store_errors():
            role = tokens.role_of(store.engine, credentials.credentials)
        if role is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token")
        if right not in tokens.RIGHTS[role]:
            raise ApiError(403, "forbidden", f"role {role!r} may not do this")
        return role

    return check


Read = Annotated[str, Depends(allowed(tokens.READ))]
Audit = Annotated[str, Depends(allowed(tokens.AUDIT))]
Write = Annotated[str, Depends(allowed(tokens.WRITE))]


class Store:
    """The ledger and a SQLAlchemy engine on one store, used under one lock."""

    def __init__(self, url: str) -> None:
        from ledger.application.service import Ledger
        from ledger.numbers import install

        install()
        self.url = url
        self.ledger = Ledger(url)
        self.engine = schema.create_engine(url)
        self.lock = threading.Lock()
        # One thread runs every use of the ledger, in arrival order: requests queue fairly
        # (a lock contended by a pool of threads lets some wait far longer than others).
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    async def read(self, work: Callable[[Any], T]) -> T:
        """Run `work(ledger)` on the ledger's thread, caught up with the log."""
        import asyncio

        def run() -> T:
            with self.reading() as ledger:
                return work(ledger)

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def run(self, work: Callable[[], T]) -> T:
        """Run `work()` on the ledger's thread (it takes the lock itself)."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """Hold the ledger, caught up with the log (other processes may have written)."""
        with self.lock, _store_errors():
            self.ledger.uow.catch_up()
            yield self.ledger

    def close(self) -> None:
        self.executor.shutdown()
        self.engine.dispose()
        self.ledger.close()


@contextmanager
def _store_errors() -> Iterator[None]:
    from ledger.application.unit_of_work import is_store_error

    try:
        yield
    except (ApiError, LedgerError):
        raise
    except Exception as error:
        if isinstance(error, StoreUnavailableError) or is_store_error(error):
            from ledger.masking import mask_in

            raise ApiError(503, "store_unavailable", "the store cannot be reached: "
                           + mask_in(str(error), _url_of_store[0])) from error
        raise


_url_of_store: list[str] = [""]  # for masking the store's password in messages


def create_app(db_url: str, *, max_body: int = DEFAULT_MAX_BODY, nats_url: str | None = None,
               stream: str = "LEDGER") -> FastAPI:
    """Return the API over the store at `db_url` (migrated to the current schema)."""
    from ledger.masking import mask_url

    _url_of_store[0] = db_url
    store = Store(db_url)
    metrics = Metrics(store, nats_url=nats_url, stream=stream)
    app = FastAPI(
        title="Margin ledger API", version=API_VERSION,
        description="The ledger's state, events, statements, journal and commands over HTTP. "
                    "Every /v1 request needs `Authorization: Bearer <token>` (docs/api.md).",
    )
    app.state.store = store
    app.state.metrics = metrics
    app.state.max_body = max_body
    from ledger.api.audit import router as audit_page  # GET /audit (ledger/api/audit.py)

    app.include_router(audit_page)
    log.info("serving the store %s", mask_url(db_url))
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.code, error.message, **error.extra)

    @app.exception_handler(LedgerError)
    async def _rejected(_: Request, error: LedgerError) -> JSONResponse:
        return _error(422, error.code, str(error))

    @app.exception_handler(RequestValidationError)
    async def _malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                             for e in error.errors())
        return _error(400, "invalid_input", problems or "malformed request")

    # ------------------------------------------------------------------ open routes

    @app.get("/healthz", tags=["operations"],
             responses={503: ERRORS[503]})
    def healthz() -> JSONResponse:
        """The store answers and its schema is the one this code expects."""
        try:
            revision = schema.current(db_url)
            with store.lock:
                head = store.ledger.recorder.max_notification_id() or 0
        except Exception as error:  # noqa: BLE001 - any failure means "not healthy"
            from ledger.masking import mask_in

            return _error(503, "store_unavailable", mask_in(str(error), db_url))
        body = {"status": "ok" if revision == schema.HEAD else "schema_behind",
                "schema": revision, "expected_schema": schema.HEAD, "log_position": head}
        return JSONResponse(body, status_code=200 if revision == schema.HEAD else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def prometheus() -> Response:
        """Prometheus text: commands by outcome, events written, batch latency, lags."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # ------------------------------------------------------------------ reads

    @app.get("/v1/accounts", tags=["accounts"], responses=ERRORS)
    async def accounts(_: Read) -> dict[str, Any]:
        """The client accounts' names, and the system accounts'."""
        from ledger.domain.postings import SYSTEM_ACCOUNTS

        names = await store.read(lambda ledger: ledger.account_names())
        return {"accounts": names, "system_accounts": list(SYSTEM_ACCOUNTS)}

    @app.get("/v1/accounts/{account}/state", tags=["accounts"], responses=ERRORS)
    async def state(account: str, _: Read,
              at: Annotated[str | None, Query(description="RFC 3339 (default: latest)")] = None,
              ) -> dict[str, Any]:
        """The account as of `at`: the JSON of `ledger state ACCOUNT --at T --json`."""
        from ledger.application import queries

        moment = parse_time(at, "at")
        return await store.read(lambda ledger: queries.state(ledger, account, moment))

    @app.get("/v1/accounts/{account}/events", tags=["accounts"], responses=ERRORS)
    async def events(account: str, _: Read, since: str | None = None, until: str | None = None,
               ) -> list[dict[str, Any]]:
        """The account's events in order: the JSON of `ledger events ACCOUNT --json`."""
        from ledger.application import queries

        start, end = parse_time(since, "since"), parse_time(until, "until")
        if start is not None and end is not None and start > end:
            raise ApiError(400, "invalid_input", f"since {since} is later than until {until}")
        return await store.read(lambda ledger: queries.events(ledger, account, start, end))

    @app.get("/v1/accounts/{account}/statement", tags=["accounts"],
             responses={**ERRORS, 200: CSV_OR_JSON})
    async def account_statement(
        request: Request, account: str, _: Read,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
        fmt: Annotated[str | None, Query(alias="format", description="json or csv")] = None,
    ) -> Any:
        """Opening balances, every posting with from ≤ at ≤ to with running balances, closing
        balances (client and system accounts); `format=csv` or `Accept: text/csv` for CSV."""
        from ledger import statements

        when = _period(start, end)
        as_csv = wants_csv(request, fmt)
        result = await store.read(
            lambda ledger: statements.statement(ledger, store.engine, account, when))
        if as_csv:
            return Response(statements.statement_csv(result), media_type="text/csv")
        return result

    @app.get("/v1/journal", tags=["audit"], responses={**ERRORS, 200: CSV_OR_JSON})
    async def journal(
        request: Request, _: Audit,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
        fmt: Annotated[str | None, Query(alias="format", description="json or csv")] = None,
    ) -> Any:
        """Every posting of every account event with from ≤ at ≤ to, one row each."""
        from ledger import statements

        when = _period(start, end)
        as_csv = wants_csv(request, fmt)
        rows = await store.read(lambda ledger: statements.journal(ledger, store.engine, when))
        if as_csv:
            return Response(statements.journal_csv(rows), media_type="text/csv")
        return {"from": start, "to": end, "postings": rows}

    @app.get("/v1/verify", tags=["audit"], responses=ERRORS)
    async def verify(_: Audit) -> dict[str, Any]:
        """What `ledger verify --json` reports (no anchor)."""
        from ledger.application.audit import audit

        key = os.environ.get("LEDGER_SEAL_KEY")
        found: dict[str, Any] = await store.read(lambda ledger: audit(ledger, None, key).as_dict())
        return found

    # ------------------------------------------------------------------ writes

    @app.post("/v1/commands", tags=["commands"],
              responses={**ERRORS, 413: {"description": "Body over the limit", **ERROR_BODY}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/x-ndjson": {"schema": {"type": "string"}},
                  "text/plain": {"schema": {"type": "string"}}}}})
    async def commands(request: Request, _: Write) -> JSONResponse:
        """Apply a JSONL body of feed commands as `ledger run` does; one result per line and
        the counts. 200 even when some lines are rejected."""
        body = await _read_body(request, max_body)
        started = time.perf_counter()
        result = await store.run(lambda: _apply(store, metrics, body))
        metrics.batch_seconds.observe(time.perf_counter() - started)
        status = 200
        if result.get("error") == "store_unavailable":
            status = 503
        elif result.get("error") == "internal_error":
            status = 500
        return JSONResponse(result, status_code=status)

    return app


def _period(start: str | None, end: str | None) -> Any:
    from ledger import statements

    first, last = require_time(start, "from"), require_time(end, "to")
    if first > last:
        raise ApiError(400, "invalid_input", f"from {start} is later than to {end}")
    return statements.period(first, last)


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing (413) one over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the body has {declared} bytes; the limit is "
                       f"{limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _apply(store: Store, metrics: Metrics, body: bytes) -> dict[str, Any]:
    """Run the body through the feed runner under the lock; one result per non-blank line."""
    from ledger.application.feed import Rejection, decode_lines, run_feed

    lines = [(number, text.removesuffix("\n").removesuffix("\r"))
             for number, text in decode_lines(body.splitlines(keepends=True))]
    rejected: dict[int, Rejection] = {}
    with store.lock, _store_errors():
        ledger = store.ledger
        ledger.uow.catch_up()
        before = ledger.recorder.max_notification_id() or 0
        report = run_feed(ledger, lines, lambda r: rejected.__setitem__(r.line, r))
        after = ledger.recorder.max_notification_id() or 0
    metrics.events_written.inc(max(0, after - before))
    results: list[dict[str, Any]] = []
    outcomes = dict(report.outcomes)
    for number, _text in lines:
        if number in rejected:
            results.append({"outcome": "rejected", **rejected[number].as_dict()})
        elif number in outcomes:
            results.append({"line": number, "outcome": outcomes[number]})
    summary = {"applied": report.applied, "acknowledged": report.acknowledged,
               "rejected": len(report.rejected)}
    for outcome, count in summary.items():
        metrics.commands.labels(outcome=outcome).inc(count)
    answer: dict[str, Any] = {"results": results, "summary": summary}
    if report.store_error is not None:
        from ledger.masking import mask_in

        answer.update(error="store_unavailable", last_committed_line=report.last_durable_line,
                      message=mask_in(str(report.store_error), store.url))
    elif report.internal_error is not None:
        log.error("internal error at line %s", report.internal_error_line,
                  exc_info=report.internal_error)
        answer.update(error="internal_error", line=report.internal_error_line,
                      message=type(report.internal_error).__name__)
    return answer


OPTIONS_VARIABLE = "LEDGER_SERVE_OPTIONS"
"""`ledger serve --workers N` passes the app's options to its processes in this variable."""


def app_from_environment() -> FastAPI:
    """Build the app from OPTIONS_VARIABLE (uvicorn's factory in each worker process)."""
    options = json.loads(os.environ[OPTIONS_VARIABLE])
    return create_app(options["db_url"], max_body=options["max_body"],
                      nats_url=options["nats_url"], stream=options["stream"])


def openapi_document(app: FastAPI) -> str:
    """Return the OpenAPI document as committed in docs/openapi.json (sorted, indented)."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
