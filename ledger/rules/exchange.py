"""Auto-exchange: covering a negative coin from the other assets (DESIGN §6.9, seed 001).

The negative coin receives exactly its deficit; each other coin with positive equity and an
index gives its share, pro rata to its effective collateral, worth `share / discount` at the
index (the account gives a little more than it receives: the discount is the exchange's).

Example: a 20,000 USDT deficit with a 0.975 discount takes 20,000 / 0.975 = 20,512.82… USD of the
other assets, split by their effective collateral.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ledger.numbers import ZERO, round_received


def auto_exchange_shares(
    deficit: Decimal,
    index: Decimal,
    discount: Decimal,
    givers: Sequence[tuple[str, Decimal, Decimal]],
    total_effective: Decimal,
    precision: int,
) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """Return (asset given, deficit coins received, exact coins given, giver's index) per giver.

    `givers` are (asset, effective collateral USD, index). The received parts are rounded down
    except the last, which takes what is left, so that together they are exactly the deficit.
    When the givers cannot cover `deficit / discount`, they are converted in full and the
    deficit is covered as far as they reach.
    """
    need_usd = deficit * index
    if need_usd / discount > total_effective:
        need_usd = total_effective * discount
        deficit = round_received(need_usd / index, precision)
    shares = []
    received_so_far = ZERO
    for position, (asset, weight, giver_index) in enumerate(givers):
        fraction = weight / total_effective
        if position == len(givers) - 1:
            received = deficit - received_so_far
        else:
            received = round_received(deficit * fraction, precision)
        received_so_far += received
        given_usd = received * index / discount
        shares.append((asset, received, given_usd / giver_index, giver_index))
    return [share for share in shares if share[1] > ZERO]
