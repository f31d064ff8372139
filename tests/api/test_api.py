"""The HTTP API against a real `ledger serve` process, on SQLite and PostgreSQL (issue 12).

Each endpoint's JSON equals the CLI's for the same store; statements and the journal keep the
ledger's invariants (closing = state at `to`, opening + postings = closing, every event's lines
sum to zero per asset); the role table; 400/413/422 bodies; POST /v1/commands with good and
bad lines; the fees account's statement equals the fees charged, computed by hand.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from api_support import END, FEES_USDT, MAX_BODY, START, Server

PERIOD = f"from={START}&to={END}"


def cli_json(server: Server, *args: str) -> Any:
    done = server.cli(*args)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


# ---------------------------------------------------------------------------- API = CLI


def test_state_equals_the_cli(server: Server) -> None:
    for at in (None, "2025-03-01T02:30:00Z", "2025-03-01T03:30:00Z"):
        query = f"?at={at}" if at else ""
        answer = server.get(f"/v1/accounts/alice/state{query}", role="service")
        assert answer.status_code == 200, answer.text
        args = ("state", "alice", "--json", *(("--at", at) if at else ()))
        assert answer.json() == cli_json(server, *args)


def test_events_equal_the_cli(server: Server) -> None:
    answer = server.get("/v1/accounts/alice/events?since=2025-03-01T02:00:00Z", role="service")
    assert answer.status_code == 200, answer.text
    assert answer.json() == cli_json(server, "events", "alice", "--since",
                                     "2025-03-01T02:00:00Z", "--json")
    kinds = [e["type"] for e in answer.json()]
    assert "Filled" in kinds
    assert "Deposited" not in kinds  # at 01:00, before `since`


def test_verify_equals_the_cli(server: Server) -> None:
    answer = server.get("/v1/verify")
    assert answer.status_code == 200, answer.text
    assert answer.json() == cli_json(server, "verify", "--json")
    assert answer.json()["breaks"] == []


@pytest.mark.parametrize("account", ["alice", "bob", "system:fees"])
def test_statement_equals_the_cli(server: Server, account: str) -> None:
    answer = server.get(f"/v1/accounts/{account}/statement?{PERIOD}", role="service")
    assert answer.status_code == 200, answer.text
    assert answer.json() == cli_json(server, "statement", account, "--from", START, "--to", END)
    as_csv = server.get(f"/v1/accounts/{account}/statement?{PERIOD}&format=csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    done = server.cli("statement", account, "--from", START, "--to", END, "--csv")
    assert as_csv.text == done.stdout


def test_journal_equals_the_cli(server: Server) -> None:
    answer = server.get(f"/v1/journal?{PERIOD}")
    assert answer.status_code == 200, answer.text
    assert answer.json() == cli_json(server, "journal", "--from", START, "--to", END)
    as_csv = server.get(f"/v1/journal?{PERIOD}", headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text == server.cli("journal", "--from", START, "--to", END, "--csv").stdout


# ---------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("start,end", [(START, END), ("2025-03-01T02:00:00Z",
                                                      "2025-03-01T03:30:00Z")])
def test_statement_closing_is_the_state_and_opening_plus_postings(
        server: Server, start: str, end: str) -> None:
    for account in ("alice", "bob"):
        found = server.get(f"/v1/accounts/{account}/statement?from={start}&to={end}").json()
        state = server.get(f"/v1/accounts/{account}/state?at={end}").json()
        assert found["closing"] == state["balances"]
        totals = {asset: Decimal(v) for asset, v in found["opening"].items()}
        for line in found["postings"]:
            assert start <= line["at"] <= end
            totals[line["asset"]] = totals.get(line["asset"], Decimal(0)) + Decimal(
                line["amount"])
            assert Decimal(line["balance"]) == totals[line["asset"]]
        assert totals == {asset: Decimal(v) for asset, v in found["closing"].items()}


def test_the_statement_before_from_is_the_opening(server: Server) -> None:
    """alice after 02:00 (deposit 10,000, fee 3): 9,997 opens the period from 02:30."""
    found = server.get("/v1/accounts/alice/statement?from=2025-03-01T02:30:00Z"
                       f"&to={END}").json()
    assert found["opening"] == {"USDT": "9997"}
    assert [line["id"] for line in found["postings"]] == ["t1", "f2", "f2"]


def test_every_journal_event_sums_to_zero_per_asset(server: Server) -> None:
    rows = server.get(f"/v1/journal?{PERIOD}").json()["postings"]
    assert rows
    sums: dict[tuple[str, int, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        sums[(row["event_account"], row["version"], row["asset"])] += Decimal(row["amount"])
    assert set(sums.values()) == {Decimal(0)}
    transfers = [r for r in rows if r["id"] == "t1"]  # two legs through system:transit
    assert [(r["event"], r["account"], r["amount"]) for r in transfers] == [
        ("TransferredOut", "alice", "-100"), ("TransferredOut", "system:transit", "100"),
        ("TransferredIn", "system:transit", "-100"), ("TransferredIn", "bob", "100")]


def test_fees_statement_equals_the_fees_charged_by_hand(server: Server) -> None:
    found = server.get(f"/v1/accounts/system:fees/statement?{PERIOD}", role="service").json()
    assert found["opening"] == {}
    assert [(line["id"], line["amount"]) for line in found["postings"]] == [
        ("f1", "3"), ("f3", "0.121"), ("f2", "1.22")]
    assert found["closing"] == {"USDT": FEES_USDT}
    later = server.get("/v1/accounts/system:fees/statement?from=2025-03-01T03:00:00Z"
                       f"&to={END}").json()
    assert later["opening"] == {"USDT": "3"}
    csv_rows = list(csv.DictReader(io.StringIO(server.get(
        f"/v1/accounts/system:fees/statement?{PERIOD}&format=csv").text)))
    assert [r["event"] for r in csv_rows] == ["FeeCharged"] * 3 + ["closing"]
    assert csv_rows[-1]["balance"] == FEES_USDT


# ---------------------------------------------------------------------------- roles

READS = ["/v1/accounts", "/v1/accounts/alice/state", "/v1/accounts/alice/events",
         f"/v1/accounts/alice/statement?{PERIOD}"]
AUDITS = [f"/v1/journal?{PERIOD}", "/v1/verify"]


@pytest.mark.parametrize("path", READS + AUDITS)
def test_the_role_table_for_reads(server: Server, path: str) -> None:
    assert server.get(path, role=None).status_code == 401
    assert server.get(path, role=None, headers={"Authorization": "Bearer nope"}
                      ).status_code == 401
    assert server.get(path, role="revoked").status_code == 401
    assert server.get(path, role="auditor").status_code == 200
    assert server.get(path, role="operator").status_code == 200
    assert server.get(path, role="service").status_code == (200 if path in READS else 403)
    refused = server.get(path, role="revoked").json()
    assert refused["error"] == "unauthorized"


def test_the_role_table_for_commands(server: Server) -> None:
    body = '{"type": "mark_price", "at": "2025-03-01T04:00:00Z", "symbol": "BTCUSDT", ' \
           '"price": "61000"}\n'  # already recorded: acknowledged, changes nothing
    assert server.post("/v1/commands", role=None, content=body).status_code == 401
    assert server.post("/v1/commands", role="revoked", content=body).status_code == 401
    for role in ("auditor", "service"):
        refused = server.post("/v1/commands", role=role, content=body)
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
    assert server.post("/v1/commands", role="operator", content=body).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/openapi.json"])
def test_open_paths_need_no_token(server: Server, path: str) -> None:
    assert server.get(path, role=None).status_code == 200


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("path,field", [
    ("/v1/accounts/alice/state?at=yesterday", "at"),
    ("/v1/accounts/alice/events?since=2025-13-01T00:00:00Z", "since"),
    (f"/v1/accounts/alice/statement?{PERIOD}&format=xml", "format"),
    (f"/v1/accounts/alice/statement?from={START}", "to"),
    (f"/v1/accounts/alice/statement?from={END}&to={START}", "from"),
    (f"/v1/journal?from=soon&to={END}", "from"),
])
def test_malformed_requests_are_400_with_the_contract_code(server: Server, path: str,
                                                           field: str) -> None:
    answer = server.get(path)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_input"
    assert field in answer.json()["message"]


def test_a_contract_rejection_is_422_with_its_code(server: Server) -> None:
    for path in ("/v1/accounts/nobody/state", "/v1/accounts/nobody/events",
                 f"/v1/accounts/nobody/statement?{PERIOD}",
                 f"/v1/accounts/system:nothing/statement?{PERIOD}"):
        answer = server.get(path)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["error"] == "unknown_account"


def test_a_body_over_the_limit_is_413(server: Server) -> None:
    line = json.dumps({"type": "deposit", "at": "2025-03-01T06:00:00Z", "id": "big",
                       "account": "alice", "asset": "USDT", "amount": "1"}) + "\n"
    body = line * (MAX_BODY // len(line) + 1)
    answer = server.post("/v1/commands", content=body)
    assert answer.status_code == 413
    assert answer.json()["error"] == "body_too_large"
    assert server.get("/v1/accounts/alice/events?since=2025-03-01T06:00:00Z").json() == []


def test_commands_report_one_result_per_line_and_the_counts(server: Server) -> None:
    lines = [
        {"type": "open_account", "at": "2025-03-01T06:00:00Z", "account": "carol",
         "mode": "single_asset"},
        {"type": "deposit", "at": "2025-03-01T06:00:00Z", "id": "c1", "account": "carol",
         "asset": "USDT", "amount": "50"},
        {"type": "deposit", "at": "2025-03-01T06:00:00Z", "id": "c1", "account": "carol",
         "asset": "USDT", "amount": "50"},  # the same command again: acknowledged
        {"type": "withdraw", "at": "2025-03-01T06:01:00Z", "id": "c2", "account": "carol",
         "asset": "USDT", "amount": "80"},  # more than the 50 there
        {"type": "deposit", "at": "2025-03-01T06:00:00Z", "id": "c3", "account": "dave",
         "asset": "USDT", "amount": "1"},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines[:2]) + "\n" + \
        json.dumps(lines[2]) + "\n{not json\n" + \
        "".join(json.dumps(line) + "\n" for line in lines[3:])
    answer = server.post("/v1/commands", content=body,
                         headers={"Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert [(r["line"], r["outcome"], r.get("error")) for r in found["results"]] == [
        (1, "applied", None), (2, "applied", None), (4, "acknowledged", None),
        (5, "rejected", "invalid_input"), (6, "rejected", "insufficient_balance"),
        (7, "rejected", "unknown_account")]
    assert found["summary"] == {"applied": 2, "acknowledged": 1, "rejected": 3}
    state = server.get("/v1/accounts/carol/state", role="service").json()
    assert state["balances"] == {"USDT": "50"}
    metrics = server.get("/metrics", role=None).text
    assert 'ledger_api_commands_total{outcome="rejected"}' in metrics
    assert "ledger_projection_lag" in metrics


def test_health_names_the_schema(server: Server) -> None:
    found = server.get("/healthz", role=None).json()
    assert found["status"] == "ok"
    assert found["schema"] == found["expected_schema"]


def test_no_token_reaches_the_log_or_a_listing(server: Server) -> None:
    listing = server.cli("token", "list")
    assert listing.returncode == 0
    assert "operator" in listing.stdout
    served = server.log.read_text()
    for secret in server.tokens.values():
        assert secret not in listing.stdout
        assert secret not in served
