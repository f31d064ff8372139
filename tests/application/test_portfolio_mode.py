"""Portfolio margin through the application (issue 7; PORTFOLIO-MARGIN.md 10.2-10.12).

Feeds go through `Ledger.handle` on both stores and are read back as the contract's `state`
and `events`. Expected figures are hand computations in the docstrings; the OKX position
builder (PM-01..03) is the yardstick the issue names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from ledger.application import queries
from ledger.application.commands import parse_command
from ledger.application.service import Ledger
from ledger.domain.ids import asset_id, instrument_id
from ledger.errors import (
    InsufficientEquityError,
    InvalidInputError,
    LedgerError,
    NoPriceError,
    NotAllowedInModeError,
    UnknownAccountError,
    UnknownSymbolError,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = 86400
YEAR = 31_536_000


def t(seconds: int = 0) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(seconds: int = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def apply(ledger: Ledger, commands: list[dict[str, Any]]) -> None:
    """Apply every command in one batch; any rejection fails the test (raises)."""
    with ledger.batch():
        for data in commands:
            ledger.handle(parse_command(data))


def stream_length(ledger: Ledger, stream: UUID) -> int:
    return len(list(ledger.events.get(stream)))


def reject(ledger: Ledger, data: dict[str, Any], error: type[LedgerError], code: str,
           accounts: list[str], streams: tuple[UUID, ...] = ()) -> None:
    """The command is rejected with `error`/`code`; the accounts' state and events and the
    reference streams named are unchanged."""
    def snapshot() -> Any:
        return ({n: (queries.state(ledger, n), queries.events(ledger, n)) for n in accounts},
                [stream_length(ledger, s) for s in streams])

    before = snapshot()
    with pytest.raises(error) as caught:
        ledger.handle(parse_command(data))
    assert caught.value.code == code
    assert snapshot() == before


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def decimals(figures: dict[str, Any]) -> dict[str, Decimal]:
    return {key: Decimal(value) for key, value in figures.items()}


TIERS = [{"up_to": "1000000000", "mmr": "0.004", "max_leverage": "100"}]


def asset(name: str, at: int = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "asset", "at": t(at), "asset": name, "precision": 8, **extra}


def index(name: str, price: str, at: int = 0) -> dict[str, Any]:
    return {"type": "index_price", "at": t(at), "asset": name, "price": price}


def perpetual(symbol: str, base: str, settle: str, size: str, taker: str = "0",
              kind: str = "linear_perpetual") -> dict[str, Any]:
    return {"type": "instrument", "at": t(), "symbol": symbol, "kind": kind, "base": base,
            "settle": settle, "contract_size": size, "taker_fee_rate": taker,
            "risk_tiers": TIERS}


def future(symbol: str, expiry: str, at: int = 0, size: str = "0.001") -> dict[str, Any]:
    return {"type": "instrument", "at": t(at), "symbol": symbol, "kind": "linear_future",
            "base": "BTC", "settle": "USDT", "contract_size": size, "expiry": expiry,
            "risk_tiers": TIERS}


def mark(symbol: str, price: str, at: int = 0) -> dict[str, Any]:
    return {"type": "mark_price", "at": t(at), "symbol": symbol, "price": price}


def risk_unit(name: str, at: int = 0, **fields: Any) -> dict[str, Any]:
    return {"type": "risk_unit", "at": t(at), "asset": name, **fields}


def portfolio_account(name: str, deposits: dict[str, str], at: int = 0) -> list[dict[str, Any]]:
    """Open in multi_asset mode, deposit, then change_mode to portfolio (10.2)."""
    commands: list[dict[str, Any]] = [
        {"type": "open_account", "at": t(at), "account": name, "mode": "multi_asset"}]
    for asset_name, amount in sorted(deposits.items()):
        commands.append({"type": "deposit", "at": t(at), "id": f"d-{asset_name}",
                         "account": name, "asset": asset_name, "amount": amount})
    commands.append({"type": "change_mode", "at": t(at), "account": name, "mode": "portfolio"})
    return commands


def fill(name: str, symbol: str, side: str, qty: str, price: str, ident: str, at: int = 0,
         margin_type: str = "cross") -> dict[str, Any]:
    return {"type": "fill", "at": t(at), "id": ident, "account": name, "symbol": symbol,
            "side": side, "qty": qty, "price": price, "fee": "0", "margin_type": margin_type}


def spot(name: str, asset_name: str, amount: str | None, at: int = 0) -> dict[str, Any]:
    return {"type": "set_spot_in_use", "at": t(at), "account": name, "asset": asset_name,
            "amount": amount}


# ----------------------------------------------------------------------------- OKX yardstick


def okx_feed() -> list[dict[str, Any]]:
    """OKX's position builder (PM-01..03) as a feed. Indexes: BTC 97,034.243706, USDT 0.99954,
    LTC 101.948182254; marks BTCUSDT 97,093.7, LTCUSDT 102. BTC unit with the default (BTC/ETH)
    parameters, LTC with the mid-cap ones (shocks to ±18 %, extreme ±36 %, basis 0.8 %, minimum
    charge 0.7 %). okx holds 2 BTC (spot in use fixed at 0, as in OKX's example), enters
    portfolio mode, realises a loss of 1 × (18,504.33 − 97,093.7) = −78,589.37 USDT, then is
    short 100 × 0.001 = 0.1 BTC at the mark and long 10 × 1 = 10 LTC at the mark (PnL 0), so
    USDT coin equity is −78,589.37."""
    return [
        asset("USDT"), asset("BTC"), asset("LTC"),
        index("BTC", "97034.243706"), index("USDT", "0.99954"), index("LTC", "101.948182254"),
        risk_unit("BTC"),
        risk_unit("LTC", price_shocks=["-0.18", "-0.12", "-0.06", "0", "0.06", "0.12", "0.18"],
                  extreme_shocks=["-0.36", "0.36"], basis_rate="0.008",
                  min_charge_rate="0.007"),
        perpetual("BTCUSDT", "BTC", "USDT", "0.001"),
        perpetual("LTCUSDT", "LTC", "USDT", "1"),
        mark("BTCUSDT", "97093.7"), mark("LTCUSDT", "102"),
        *portfolio_account("okx", {"BTC": "2"}),
        spot("okx", "BTC", "0"),
        fill("okx", "BTCUSDT", "buy", "1000", "97093.7", "loss-open"),
        fill("okx", "BTCUSDT", "sell", "1000", "18504.33", "loss-close"),
        fill("okx", "BTCUSDT", "sell", "100", "97093.7", "f1"),
        fill("okx", "LTCUSDT", "buy", "10", "102", "f2"),
    ]


def test_okx_position_builder_through_a_feed(store_url: str) -> None:
    """BTC unit: X = −0.1; MR1 = 0.1 × 97,034.243706 × 12 % = 1,164.410924472 = MR6
    (0.5 × 24 %); c = −0.1 × 97,093.7 × 0.99954 = −9,704.9036898: MR4 = 0.2 % of it =
    19.4098073796, MR7 = 0.45 % = 43.6720666041; MMR = 1,164.410924472 + 19.4098073796 =
    1,183.8207318516; IMR × 1.3 = 1,538.96695140708; delta_usd −9,703.4243706.
    LTC unit: X = 10; MR1 = 10 × 101.948182254 × 18 % = 183.5067280572 = MR6 (0.5 × 36 %);
    c = 10 × 102 × 0.99954 = 1,019.5308: MR4 0.8 % = 8.1562464, MR7 0.7 % = 7.1367156;
    MMR 191.6629744572, IMR 249.16186679436; delta_usd 1,019.48182254.
    Borrowing: 78,589.37 × 0.99954 = 78,553.2188898 → × 2 % = 1,571.064377796, × 10 % =
    7,855.32188898. Total MMR 1,183.8207318516 + 191.6629744572 + 1,571.064377796 =
    2,946.5480841048; IMR 1.3 × 1,375.4837063088 + 7,855.32188898 = 9,643.45070718144.
    Effective equity 2 × 97,034.243706 − 78,553.2188898 = 115,515.2685222; available
    115,515.2685222 − 9,643.45070718144 = 105,871.81781501856."""
    ledger = Ledger(store_url)
    apply(ledger, okx_feed())
    state = queries.state(Ledger(store_url), "okx")
    units = state["margin"]["risk_units"]
    assert decimals(units["BTC"]) == decimals({
        "mr1": "1164.410924472", "mr2": "0", "mr3": "0", "mr4": "19.4098073796", "mr5": "0",
        "mr6": "1164.410924472", "mr7": "43.6720666041", "mr9": "0", "mmr": "1183.8207318516",
        "imr": "1538.96695140708", "delta": "-0.1", "delta_usd": "-9703.4243706",
        "spot_in_use": "0", "mr8": "0"})  # mr8: issue 15
    assert decimals(units["LTC"]) == decimals({
        "mr1": "183.5067280572", "mr2": "0", "mr3": "0", "mr4": "8.1562464", "mr5": "0",
        "mr6": "183.5067280572", "mr7": "7.1367156", "mr9": "0", "mmr": "191.6629744572",
        "imr": "249.16186679436", "delta": "10", "delta_usd": "1019.48182254",
        "spot_in_use": "0", "mr8": "0"})
    margin = state["margin"]
    assert Decimal(margin["borrowing_mmr_usd"]) == Decimal("1571.064377796")
    assert Decimal(margin["borrowing_imr_usd"]) == Decimal("7855.32188898")
    assert Decimal(margin["maintenance_margin_usd"]) == Decimal("2946.5480841048")
    assert Decimal(margin["initial_margin_usd"]) == Decimal("9643.45070718144")
    assert Decimal(margin["effective_equity_usd"]) == Decimal("115515.2685222")
    assert Decimal(margin["available_usd"]) == Decimal("105871.81781501856")
    assert Decimal(state["debts"]["USDT"]) == Decimal("78589.37")
    assert Decimal(state["collateral"]["USDT"]["equity"]) == Decimal("-78589.37")
    for held in state["positions"]:
        assert (held["maintenance_margin"], held["initial_margin"],
                held["liquidation_price"]) == (None, None, None)


def test_automatic_spot_in_use_offsets_the_okx_short(store_url: str) -> None:
    """okx_feed, then spot in use back to automatic: s = min(holding 2, max(0, 0.1)) = 0.1,
    X = 0 → MR1 = MR6 = 0; MR4 stays 19.4098073796 (spot basis rate 0), MR7 43.6720666041
    wins: BTC MMR = max(0 + 19.4098073796, 43.6720666041) = 43.6720666041."""
    ledger = Ledger(store_url)
    apply(ledger, [*okx_feed(), spot("okx", "BTC", None, 60)])
    btc = decimals(queries.state(ledger, "okx")["margin"]["risk_units"]["BTC"])
    assert (btc["spot_in_use"], btc["delta"], btc["mr1"], btc["mr6"]) == (
        Decimal("0.1"), Decimal("0"), Decimal("0"), Decimal("0"))
    assert (btc["mr4"], btc["mr7"], btc["mmr"]) == (
        Decimal("19.4098073796"), Decimal("43.6720666041"), Decimal("43.6720666041"))


# ----------------------------------------------------------------------------- MR4, inverse


def test_mr4_of_a_future_at_02_and_01_years_to_expiry(store_url: str) -> None:
    """BTCUSDT-0315 expires 2025-03-15T00:00Z, 73 days = 6,307,200 s = 0.2 years after T0.
    Long 1,000 × 0.001 = 1 BTC at mark 40,500, index 40,000, 1 BTC held (a long needs no
    spot: s = 0). At T0: MR4 = 40,500 × (0.2 % + 5 % × 0.2) = 486; MR1 = MR6 = 40,000 × 12 % =
    4,800; MR7 = 40,500 × 0.45 % = 182.25; MMR 5,286. At 2025-02-06T12:00Z (36.5 days left,
    τ = 0.1): MR4 = 40,500 × 0.7 % = 283.5, MMR 5,083.5 (state at T uses the tenor as of T)."""
    ledger = Ledger(store_url)
    apply(ledger, [
        asset("USDT"), asset("BTC"), index("BTC", "40000"), risk_unit("BTC"),
        future("BTCUSDT-0315", "2025-03-15T00:00:00Z"), mark("BTCUSDT-0315", "40500"),
        *portfolio_account("fay", {"BTC": "1"}),
        fill("fay", "BTCUSDT-0315", "buy", "1000", "40500", "f1"),
    ])
    reader = Ledger(store_url)
    now = decimals(queries.state(reader, "fay", when(0))["margin"]["risk_units"]["BTC"])
    assert (now["mr1"], now["mr6"], now["mr4"], now["mr7"], now["mmr"], now["spot_in_use"]) == (
        Decimal("4800"), Decimal("4800"), Decimal("486"), Decimal("182.25"), Decimal("5286"),
        Decimal("0"))
    assert YEAR // 10 == 36 * DAY + DAY // 2
    later = decimals(queries.state(reader, "fay", when(YEAR // 10))["margin"]["risk_units"]["BTC"])
    assert (later["mr4"], later["mmr"]) == (Decimal("283.5"), Decimal("5083.5"))


def test_an_inverse_contract_hedged_by_the_coin_it_is_margined_in(store_url: str) -> None:
    """1 BTC held; short 500 × 100 USD inverse (BTCUSD) at 50,000: x = −50,000/50,000 = −1,
    coin equity 1 → s = 1, X = 0. The price falls to 40,000 (mark and index): the short gains
    50,000 × (1/40,000 − 1/50,000) = 0.25 BTC, coin equity 1.25; x = −50,000/40,000 = −1.25,
    s = min(1.25, 1.25) = 1.25, X = 0 still: MR1 = MR6 = 0. MR4 = |c| × 0.2 % = 50,000 (face)
    × 0.2 % = 100, MR7 = 50,000 × 0.45 % = 225, MR9 0 (one margin currency): MMR 225, IMR
    292.5; equity 1.25 × 40,000 = 50,000 USD. (Counting only the wallet 1 as holding would
    leave X = −0.25 and MR1 = 0.25 × 40,000 × 12 % = 1,200.)"""
    ledger = Ledger(store_url)
    apply(ledger, [
        asset("USDT"), asset("BTC"), index("BTC", "50000"), risk_unit("BTC"),
        perpetual("BTCUSD", "BTC", "BTC", "100", kind="inverse_perpetual"),
        mark("BTCUSD", "50000"),
        *portfolio_account("ian", {"BTC": "1"}),
        fill("ian", "BTCUSD", "sell", "500", "50000", "f1"),
        index("BTC", "40000", 60), mark("BTCUSD", "40000", 60),
    ])
    for seconds, held, in_use in ((0, "1", "1"), (60, "1.25", "1.25")):
        state = queries.state(ledger, "ian", when(seconds))
        btc = decimals(state["margin"]["risk_units"]["BTC"])
        assert Decimal(state["collateral"]["BTC"]["equity"]) == Decimal(held)
        assert (btc["spot_in_use"], btc["delta"], btc["delta_usd"], btc["mr1"], btc["mr6"]) == (
            Decimal(in_use), Decimal("0"), Decimal("0"), Decimal("0"), Decimal("0"))
        assert (btc["mr4"], btc["mr7"], btc["mr9"], btc["mmr"], btc["imr"]) == (
            Decimal("100"), Decimal("225"), Decimal("0"), Decimal("225"), Decimal("292.5"))
        assert Decimal(state["margin"]["equity_usd"]) == Decimal("50000")


# ----------------------------------------------------------------------------- liquidation plan


def plan_feed() -> list[dict[str, Any]]:
    """lisa holds 15 ETH (index 2,000: 30,000 USD), enters portfolio mode, realises a 29,250
    USDT loss (1 BTC bought at 50,000, sold at 20,750), then (every mark = entry, fees 0):
      BTCUSDT perp +3,000 × 0.001 = +3 BTC (USDT), BTCUSDC perp −1 BTC (USDC),
      BTCUSDT-0315 future −1 BTC (USDT, 0.2 years: MR4 rate 1.2 %), BTC index/marks 50,000;
      ETHUSDT perp −1,000 × 0.01 = −10 ETH (taker fee 0.05 %), ETHUSDC perp −5 ETH.
    A check_margin at T0 follows."""
    return [
        asset("USDT"), asset("USDC"), asset("BTC"), asset("ETH"),
        index("BTC", "50000"), index("ETH", "2000"), risk_unit("BTC"), risk_unit("ETH"),
        perpetual("BTCUSDT", "BTC", "USDT", "0.001"),
        perpetual("BTCUSDC", "BTC", "USDC", "0.001"),
        future("BTCUSDT-0315", "2025-03-15T00:00:00Z"),
        perpetual("ETHUSDT", "ETH", "USDT", "0.01", taker="0.0005"),
        perpetual("ETHUSDC", "ETH", "USDC", "0.01"),
        mark("BTCUSDT", "50000"), mark("BTCUSDC", "50000"), mark("BTCUSDT-0315", "50000"),
        mark("ETHUSDT", "2000"), mark("ETHUSDC", "2000"),
        *portfolio_account("lisa", {"ETH": "15"}),
        fill("lisa", "BTCUSDT", "buy", "1000", "50000", "loss-open"),
        fill("lisa", "BTCUSDT", "sell", "1000", "20750", "loss-close"),
        fill("lisa", "BTCUSDT", "buy", "3000", "50000", "f1"),
        fill("lisa", "BTCUSDC", "sell", "1000", "50000", "f2"),
        fill("lisa", "BTCUSDT-0315", "sell", "1000", "50000", "f3"),
        fill("lisa", "ETHUSDT", "sell", "1000", "2000", "f4"),
        fill("lisa", "ETHUSDC", "sell", "500", "2000", "f5"),
        {"type": "check_margin", "at": t()},
    ]


def test_a_liquidation_plan_runs_through_all_four_stages_and_stops_at_the_target(
        store_url: str) -> None:
    """Effective equity 30,000 − 29,250 = 750; borrowing MMR 29,250 × 2 % = 585.
    BTC unit: D = 3 − 1 − 1 = +1 → MR1 = MR6 = 50,000 × 12 % = 6,000; MR4 perp |150,000 −
    50,000| × 0.2 % = 200 + future 50,000 × 1.2 % = 600 → 800; MR9: USDT +100,000 vs USDC
    −50,000 → H 50,000 × 0.75 % = 375; MR7 250,000 × 0.45 % = 1,125; MMR 7,175.
    ETH unit: D −15, spot 15, X 0; MR4 30,000 × 0.2 % = 60, MR7 30,000 × 0.45 % = 135 → 135;
    MR9 0 (both short). Total 7,895: level 750/7,895 ≤ 1 → trigger, then:
    1 ddh1 (BTC): H 50,000, L 100,000: BTCUSDT sells 3,000 × ½ = 1,500, BTCUSDC buys 1,000
      (whole), the future buys 1,000 × ½ = 500. BTC: +1.5/−0.5, MR1 6,000, MR4 150 + 300,
      MR7 450 → 6,450; level 750/(6,450 + 135 + 585) = 750/7,170.
    2 ddh2 (BTC): X = +1: BTCUSDT sells 1,500 × 1/1.5 = 1,000. MR1 0, MR4 50 + 300 = 350,
      MR7 225 → 350; level 750/1,070.
    3 basis (BTC): perp +25,000 vs future −25,000: both close (500 each). BTC unit gone;
      level 750/(135 + 585) = 750/720 = 1.0416… < 1.1. (ETH has one tenor bucket: no step.)
    4 general: ETHUSDT (|c| 20,000, before ETHUSDC's 10,000) buys 1,000, fee 1,000 × 0.01 ×
      2,000 × 0.05 % = 10 USDT: equity 740, USDT liability 29,260 (borrowing 585.2), ETH MMR
      max(10,000 × 0.2 %, 10,000 × 0.45 %) = 45 → level 740/630.2 = 1.174… ≥ 1.1: stop with
      ETHUSDC (and every ETH held) left. Nothing is closed for real (a signal)."""
    ledger = Ledger(store_url)
    apply(ledger, plan_feed())
    history = queries.events(Ledger(store_url), "lisa")
    triggers = of_type(history, "LiquidationTriggered")
    assert len(triggers) == 1
    trigger = triggers[0]
    assert trigger["mode"] == "portfolio"
    assert Decimal(trigger["margin_level"]) == Decimal(750) / Decimal(7895)
    assert Decimal(trigger["effective_equity_usd"]) == Decimal("750")
    assert Decimal(trigger["maintenance_margin_usd"]) == Decimal("7895")
    assert Decimal(trigger["target_level"]) == Decimal("1.1")
    assert (trigger["steps"], trigger["target_reached"]) == (4, True)
    assert Decimal(trigger["final_margin_level"]) == Decimal(740) / Decimal("630.2")

    legs = of_type(history, "LiquidationStepPlanned")
    assert [leg["stage"] for leg in legs] == [
        "ddh1", "ddh1", "ddh1", "ddh2", "basis", "basis", "general"]
    assert history.index(legs[0]) == history.index(trigger) + 1
    rows = [(leg["step"], leg["underlying"], leg["symbol"], leg["side"], Decimal(leg["qty"]),
             Decimal(leg["price"]), Decimal(leg["fee"]), Decimal(leg["margin_level_after"]))
            for leg in legs]
    after1, after2 = Decimal(750) / Decimal(7170), Decimal(750) / Decimal(1070)
    after3, after4 = Decimal(750) / Decimal(720), Decimal(740) / Decimal("630.2")
    price, fee0 = Decimal(50000), Decimal(0)
    assert rows == [
        (1, "BTC", "BTCUSDT", "sell", Decimal(1500), price, fee0, after1),
        (1, "BTC", "BTCUSDC", "buy", Decimal(1000), price, fee0, after1),
        (1, "BTC", "BTCUSDT-0315", "buy", Decimal(500), price, fee0, after1),
        (2, "BTC", "BTCUSDT", "sell", Decimal(1000), price, fee0, after2),
        (3, "BTC", "BTCUSDT", "sell", Decimal(500), price, fee0, after3),
        (3, "BTC", "BTCUSDT-0315", "buy", Decimal(500), price, fee0, after3),
        (4, "ETH", "ETHUSDT", "buy", Decimal(1000), Decimal(2000), Decimal(10), after4),
    ]
    assert len(queries.state(ledger, "lisa")["positions"]) == 5
    before = queries.events(ledger, "lisa")
    assert ledger.handle(parse_command({"type": "check_margin", "at": t()})) == "acknowledged"
    assert queries.events(Ledger(store_url), "lisa") == before


# ----------------------------------------------------------------------------- bad input


def bad_input_feed() -> list[dict[str, Any]]:
    """pia: portfolio mode, 1 BTC (index 50,000), long 100 × 0.001 BTCUSDT. mo: multi_asset.
    ETH has an index but no risk unit; SOL has a risk unit but no index. BTCUSDT-0315 expires
    2025-03-15T00:00Z."""
    return [
        asset("USDT"), asset("BTC"), asset("ETH"), asset("SOL"),
        index("BTC", "50000"), index("ETH", "2000"),
        risk_unit("BTC"), risk_unit("SOL"),
        perpetual("BTCUSDT", "BTC", "USDT", "0.001"),
        perpetual("ETHUSDT", "ETH", "USDT", "0.01"),
        perpetual("SOLUSDT", "SOL", "USDT", "1"),
        future("BTCUSDT-0315", "2025-03-15T00:00:00Z"),
        mark("BTCUSDT", "50000"), mark("BTCUSDT-0315", "50000"),
        *portfolio_account("pia", {"BTC": "1"}),
        fill("pia", "BTCUSDT", "buy", "100", "50000", "f1"),
        {"type": "open_account", "at": t(), "account": "mo", "mode": "multi_asset"},
        {"type": "deposit", "at": t(), "id": "d1", "account": "mo", "asset": "USDT",
         "amount": "20000"},
    ]


def test_bad_spot_in_use_is_rejected_and_changes_nothing(store_url: str) -> None:
    """A negative amount: invalid_input; an account outside portfolio mode (mo) and an asset
    without risk-unit parameters (ETH): not_allowed_in_mode."""
    ledger = Ledger(store_url)
    apply(ledger, bad_input_feed())
    accounts = ["pia", "mo"]
    reject(ledger, spot("pia", "BTC", "-1", 60), InvalidInputError, "invalid_input", accounts)
    reject(ledger, spot("mo", "BTC", "1", 60), NotAllowedInModeError, "not_allowed_in_mode",
           accounts)
    reject(ledger, spot("pia", "ETH", "1", 60), NotAllowedInModeError, "not_allowed_in_mode",
           accounts)


@pytest.mark.parametrize("fields", [
    {"price_shocks": ["-1", "0", "0.12"]},
    {"price_shocks": ["-1.5", "0.12"]},
    {"extreme_shocks": ["-1", "0.24"]},
    {"min_charge_tiers": [{"up_to": "70000", "multiplier": "2"},
                          {"up_to": "10000", "multiplier": "1"},
                          {"up_to": None, "multiplier": "4"}]},
    {"min_charge_tiers": [{"up_to": None, "multiplier": "1"},
                          {"up_to": "10000", "multiplier": "2"}]},
    {"depeg_bands": [{"up_to": "5000000", "rate": "0.0175"},
                     {"up_to": "1000000", "rate": "0.0075"}]},
], ids=["shock-minus-100pct", "shock-below-minus-100pct", "extreme-minus-100pct",
        "tiers-unsorted", "tier-open-not-last", "bands-unsorted"])
def test_bad_risk_unit_parameters_are_rejected(store_url: str, fields: dict[str, Any]) -> None:
    """A shock at or below −100 % and tiers or bands whose up_to do not strictly increase (or
    an open tier before the last) are invalid_input; the BTC parameter history and pia's
    figures are unchanged."""
    ledger = Ledger(store_url)
    apply(ledger, bad_input_feed())
    reject(ledger, risk_unit("BTC", 60, **fields), InvalidInputError, "invalid_input", ["pia"],
           (asset_id("BTC"),))


def test_bad_futures_and_fills_after_expiry_are_rejected(store_url: str) -> None:
    """invalid_input, each changing nothing: a future without expiry; one whose expiry is
    before (or at) its listing time; an expiry on a perpetual; a funding rate for a future;
    fills on BTCUSDT-0315 at and after its expiry 2025-03-15T00:00Z (the instrument is not
    listed by a rejected command: a fill on it is unknown_symbol)."""
    ledger = Ledger(store_url)
    apply(ledger, bad_input_feed())
    accounts = ["pia"]
    no_expiry = future("BTCUSDT-NOEXP", "2025-06-27T00:00:00Z", 60)
    del no_expiry["expiry"]
    reject(ledger, no_expiry, InvalidInputError, "invalid_input", accounts,
           (instrument_id("BTCUSDT-NOEXP"),))
    reject(ledger, future("BTCUSDT-OLD", "2024-12-27T00:00:00Z", 60), InvalidInputError,
           "invalid_input", accounts, (instrument_id("BTCUSDT-OLD"),))
    reject(ledger, future("BTCUSDT-NOW", t(60), 60), InvalidInputError, "invalid_input",
           accounts, (instrument_id("BTCUSDT-NOW"),))
    perp = {**perpetual("BTCUSDT-P2", "BTC", "USDT", "0.001"), "at": t(60),
            "expiry": "2025-06-27T00:00:00Z"}
    reject(ledger, perp, InvalidInputError, "invalid_input", accounts,
           (instrument_id("BTCUSDT-P2"),))
    reject(ledger, {"type": "funding_rate", "at": t(60), "symbol": "BTCUSDT-0315",
                    "rate": "0.0001"}, InvalidInputError, "invalid_input", accounts,
           (instrument_id("BTCUSDT-0315"),))
    expiry = 73 * DAY
    apply(ledger, [mark("BTCUSDT-0315", "50000", expiry)])
    for seconds, ident in ((expiry, "x1"), (expiry + 60, "x2")):
        reject(ledger, fill("pia", "BTCUSDT-0315", "buy", "1", "50000", ident, seconds),
               InvalidInputError, "invalid_input", accounts)
    with pytest.raises(UnknownSymbolError):
        ledger.handle(parse_command(fill("pia", "BTCUSDT-OLD", "buy", "1", "50000", "x3",
                                         expiry)))


def test_bad_portfolio_fills_are_rejected(store_url: str) -> None:
    """In portfolio mode: an isolated fill and a fill on an underlying without risk unit
    (ETHUSDT) are not_allowed_in_mode; one on an underlying without index price (SOLUSDT)
    is no_price. Each changes nothing."""
    ledger = Ledger(store_url)
    apply(ledger, bad_input_feed())
    accounts = ["pia"]
    reject(ledger, fill("pia", "BTCUSDT", "buy", "10", "50000", "x1", 60, "isolated"),
           NotAllowedInModeError, "not_allowed_in_mode", accounts)
    reject(ledger, fill("pia", "ETHUSDT", "buy", "10", "2000", "x2", 60),
           NotAllowedInModeError, "not_allowed_in_mode", accounts)
    reject(ledger, fill("pia", "SOLUSDT", "buy", "10", "100", "x3", 60), NoPriceError,
           "no_price", accounts)


def test_portfolio_mode_cannot_be_opened_directly_nor_entered_below_the_minimum(
        store_url: str) -> None:
    """open_account in portfolio mode: insufficient_equity, no account is created. ned holds
    0.2 BTC at 50,000 with a 90 % collateral ratio: equity 10,000 but effective 9,000 <
    10,000: insufficient_equity, still multi_asset. oli holds exactly 10,000 USDT (effective
    10,000): accepted (the minimum is inclusive)."""
    ledger = Ledger(store_url)
    apply(ledger, [
        *bad_input_feed(),
        asset("BTC", 30, collateral_tiers=[{"up_to": None, "ratio": "0.9"}]),
        {"type": "open_account", "at": t(60), "account": "ned", "mode": "multi_asset"},
        {"type": "deposit", "at": t(60), "id": "d1", "account": "ned", "asset": "BTC",
         "amount": "0.2"},
        {"type": "open_account", "at": t(60), "account": "oli", "mode": "multi_asset"},
        {"type": "deposit", "at": t(60), "id": "d1", "account": "oli", "asset": "USDT",
         "amount": "10000"},
    ])
    with pytest.raises(InsufficientEquityError) as caught:
        ledger.handle(parse_command({"type": "open_account", "at": t(120), "account": "neo",
                                     "mode": "portfolio"}))
    assert caught.value.code == "insufficient_equity"
    with pytest.raises(UnknownAccountError):
        queries.state(ledger, "neo")
    state = queries.state(ledger, "ned")
    assert (Decimal(state["margin"]["equity_usd"]),
            Decimal(state["margin"]["effective_equity_usd"])) == (Decimal(10000), Decimal(9000))
    reject(ledger, {"type": "change_mode", "at": t(120), "account": "ned",
                    "mode": "portfolio"}, InsufficientEquityError, "insufficient_equity",
           ["ned"])
    apply(ledger, [{"type": "change_mode", "at": t(120), "account": "oli",
                    "mode": "portfolio"}])
    assert queries.state(ledger, "oli")["mode"] == "portfolio"
