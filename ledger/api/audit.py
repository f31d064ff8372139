"""The auditor's page at `/audit` (issue 12, item 4): one HTML page, a script and a style sheet.

The page itself is public (it holds no data); everything it shows comes from the `/v1` API,
fetched by the browser with the token the auditor types (kept in `sessionStorage`, sent as
`Authorization: Bearer`). So the page sees exactly what the token's role may see, and its
figures are the API's JSON, rounded for display in the browser by the one rule written in
docs/audit.md (exact values on hover and in the JSON shown beside them).

No build step, no framework, no CDN: three files under `ledger/api/static/`, served here with a
Content-Security-Policy that allows only this origin's script and style (no inline script, no
third party), so a token typed into the page can only travel to this server.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

STATIC = Path(__file__).parent / "static"
FILES = {
    "audit.html": "text/html; charset=utf-8",
    "audit.js": "text/javascript; charset=utf-8",
    "audit.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _file(name: str) -> Response:
    body = (STATIC / name).read_bytes()
    return Response(body, media_type=FILES[name], headers=HEADERS)


@router.get("/audit")
def page() -> Response:
    """The auditor's page (no token needed: it asks for one)."""
    return _file("audit.html")


@router.get("/audit/audit.js")
def script() -> Response:
    return _file("audit.js")


@router.get("/audit/audit.css")
def style() -> Response:
    return _file("audit.css")
