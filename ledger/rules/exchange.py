"""Auto-exchange: covering a negative coin from the other assets (DESIGN §6.9, seed 001).

The negative coin receives exactly its deficit; each other coin with positive equity and an
index gives its share, pro rata to its effective collateral, worth `share / discount` at the
index (the account gives a little more than it receives: the discount is the exchange's).

Example: a 20,000 USDT deficit with a 0.975 discount takes 20,000 / 0.975 = 20,512.82… USD of the
other assets, split by their effective collateral.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from ledger.numbers import ZERO, round_received
from ledger.rules.terms import AutoExchangeTrigger


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


def auto_exchange_deficit(
    wallet: Decimal, index: Decimal, threshold: Decimal,
    trigger: AutoExchangeTrigger = AutoExchangeTrigger.ABOVE,
) -> Decimal:
    """Return the deficit of a coin to cover: `−wallet` when its negative balance, valued at
    its index, passes the threshold, else 0. The asset's `auto_exchange_trigger` (issue 14)
    says what passing means:

    - `above` (the default, DESIGN 6.11; MEXC multi-asset futures, "when a crypto's liability
      exceeds the auto repayment threshold", https://www.mexc.com/futures/information/multi_asset):
      worth more than the threshold;
    - `at_or_above`: worth the threshold or more (a debt exactly at the threshold is covered,
      so it favours the exchange by one boundary case).

    Example: −20,000 USDT at 1 with a 10,000 threshold → 20,000; −5,000 → 0; exactly −10,000 →
    0 under `above`, 10,000 under `at_or_above`.
    """
    if wallet >= ZERO:
        return ZERO
    worth = -wallet * index
    if trigger is AutoExchangeTrigger.AT_OR_ABOVE:
        return -wallet if worth >= threshold else ZERO
    return -wallet if worth > threshold else ZERO


def auto_exchange_givers(
    asset: str, collateral: Iterable[tuple[str, Decimal, Decimal | None, Decimal]],
) -> tuple[list[tuple[str, Decimal, Decimal]], Decimal]:
    """Return the coins that cover `asset`'s deficit, as (coin, weight, index), and the total
    weight: every other coin with positive equity, an index price and positive effective
    collateral, weighted by its effective collateral USD (DESIGN 6.11, stablecoins included).

    `collateral` holds (coin, equity, index, effective USD). Example: USDT −20,000; BTC equity
    1 at 60,000 with 54,000 effective and ETH equity 10 at 3,000 with 27,000 → weights
    54,000 and 27,000, total 81,000: BTC gives two thirds, ETH one third.
    """
    givers = [(other, effective, index) for other, equity, index, effective in collateral
              if other != asset and equity > ZERO and index and effective > ZERO]
    return givers, sum((weight for _, weight, _ in givers), ZERO)
