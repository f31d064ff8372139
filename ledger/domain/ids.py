"""Stream ids: uuid5 of a name under one namespace, so "create twice" is a conflict.

`account_id("alice")` is the id of alice's stream; reference data has one stream per asset, per
instrument, and one for the ledger-wide portfolio-margin levels.
"""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6b1f7c52-8a8e-4c1e-9b7a-6f1f0f4c2a10")


@lru_cache(maxsize=1 << 20)
def account_id(name: str) -> UUID:
    """(Cached for a million names: a settlement maps every account's name to its stream, and
    a cache smaller than the accounts recomputed 100,000 uuid5 per settlement, issue 11.)"""
    return uuid5(NAMESPACE, "account:" + name)


@lru_cache(maxsize=1 << 16)
def asset_id(asset: str) -> UUID:
    return uuid5(NAMESPACE, "asset:" + asset)


@lru_cache(maxsize=1 << 16)
def instrument_id(symbol: str) -> UUID:
    return uuid5(NAMESPACE, "instrument:" + symbol)


def portfolio_settings_id() -> UUID:
    return uuid5(NAMESPACE, "portfolio-margin")
