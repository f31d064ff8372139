"""Issue 14 (convB): reference events recorded before the policy fields existed read back with
the defaults, and the fields round-trip through the event dicts."""

from __future__ import annotations

from decimal import Decimal

from ledger import numbers
from ledger.domain.terms import (
    asset_from_dict,
    asset_to_dict,
    instrument_from_dict,
    instrument_to_dict,
)
from ledger.rules.terms import (
    AssetTerms,
    AutoAddAmount,
    CloseFeeBasis,
    InstrumentTerms,
    Kind,
    RiskTier,
)

numbers.install()

D = Decimal
BTCUSDT = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D("0.001"),
                          (RiskTier(None, D("0.004"), D(100)),))
NEW_INSTRUMENT_KEYS = ("close_fee_basis", "price_tick", "im_includes_close_fee")
NEW_ASSET_KEYS = ("bid_buffer", "ask_buffer")


def test_an_old_instrument_event_reads_with_todays_behaviour() -> None:
    old = {k: v for k, v in instrument_to_dict(BTCUSDT).items() if k not in NEW_INSTRUMENT_KEYS}
    terms = instrument_from_dict(old)
    assert terms.close_fee_basis is CloseFeeBasis.ENTRY
    assert terms.price_tick is None
    assert terms.im_includes_close_fee is False
    assert terms == BTCUSDT


def test_an_old_asset_event_reads_with_zero_buffers() -> None:
    old = {k: v for k, v in asset_to_dict(AssetTerms("USDT")).items()
           if k not in NEW_ASSET_KEYS}
    terms = asset_from_dict(old)
    assert terms.bid_buffer == D(0)
    assert terms.ask_buffer == D(0)


def test_the_policy_fields_round_trip() -> None:
    terms = InstrumentTerms("BTCUSDT", Kind.LINEAR_PERPETUAL, "BTC", "USDT", D("0.001"),
                            (RiskTier(None, D("0.004"), D(100)),),
                            auto_add_amount=AutoAddAmount.RESTORE_INITIAL_RATE,
                            close_fee_basis=CloseFeeBasis.RESERVED, price_tick=D("0.5"),
                            im_includes_close_fee=True)
    assert instrument_from_dict(instrument_to_dict(terms)) == terms
    asset = AssetTerms("USDT", bid_buffer=D("0.01"), ask_buffer=D("0.005"))
    assert asset_from_dict(asset_to_dict(asset)) == asset
