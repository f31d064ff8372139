"""Issue 14 (convB): a policy value outside its allowed set is `invalid_input` naming the field
and the allowed values; the defaults are today's behaviour."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from ledger import numbers
from ledger.application.commands import AssetCmd, InstrumentCmd, parse_line
from ledger.errors import InvalidInputError

numbers.install()

INSTRUMENT = {"type": "instrument", "at": "2025-01-01T00:00:00Z", "symbol": "BTCUSDT",
              "kind": "linear_perpetual", "base": "BTC", "settle": "USDT",
              "contract_size": "0.001",
              "risk_tiers": [{"up_to": None, "mmr": "0.004", "max_leverage": "100"}]}
ASSET = {"type": "asset", "at": "2025-01-01T00:00:00Z", "asset": "USDT"}


def parse(base: dict[str, Any], **fields: Any) -> Any:
    return parse_line(json.dumps({**base, **fields}))


@pytest.mark.parametrize(("base", "fields", "message"), [
    (INSTRUMENT, {"close_fee_basis": "bankruptcy"},
     "close_fee_basis must be one of: entry, liquidation_price, reserved"),
    (INSTRUMENT, {"auto_add_amount": "restore"},
     "auto_add_amount must be one of: maintenance, initial, restore_initial_rate"),
    (INSTRUMENT, {"price_tick": "0"}, "price_tick must be > 0"),
    (INSTRUMENT, {"price_tick": "-1"}, "price_tick must be > 0"),
    (INSTRUMENT, {"im_includes_close_fee": "yes"}, "im_includes_close_fee must be true or false"),
    (ASSET, {"bid_buffer": "0.6"}, "bid_buffer must be at most 0.5"),
    (ASSET, {"ask_buffer": "-0.01"}, "ask_buffer must be ≥ 0"),
])
def test_values_outside_the_allowed_set_are_invalid_input(
    base: dict[str, Any], fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse(base, **fields)
    assert caught.value.code == "invalid_input"
    assert message in str(caught.value)


def test_the_defaults_are_todays_behaviour() -> None:
    instrument = parse(INSTRUMENT)
    assert isinstance(instrument, InstrumentCmd)
    assert instrument.close_fee_basis == "entry"
    assert instrument.price_tick is None
    assert instrument.im_includes_close_fee is False
    assert instrument.auto_add_amount == "maintenance"
    asset = parse(ASSET)
    assert isinstance(asset, AssetCmd)
    assert asset.bid_buffer == Decimal(0)
    assert asset.ask_buffer == Decimal(0)
