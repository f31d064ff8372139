"""The OpenAPI document: the committed docs/openapi.json is what the app serves, and a bounded
property run generated from it (schemathesis) meets no 5xx on a real server, either backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from api_support import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 15  # per operation and backend: enough to meet every parameter's edge cases


def test_the_committed_openapi_document_is_what_the_app_serves(server: Server) -> None:
    served = httpx.get(server.base + "/openapi.json", timeout=30).json()
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert served == committed, "regenerate: python -m ledger.api.openapi > docs/openapi.json"


def test_generated_requests_meet_no_server_error(server: Server) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_dict(
        httpx.get(server.base + "/openapi.json", timeout=30).json())
    auth = {"Authorization": f"Bearer {server.tokens['operator']}"}
    seen: list[tuple[str, int]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy: Any = operation.as_strategy()

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy, token=st.sampled_from([auth, {}]))
        def run(case: Any, token: dict[str, str]) -> None:
            response = case.call(base_url=server.base, headers=token, timeout=60)
            seen.append((case.operation.label, response.status_code))
            assert response.status_code < 500, (case.as_curl_command(), response.text)

        run()
    assert len({label for label, _ in seen}) >= 9  # every operation was tried
