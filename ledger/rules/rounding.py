"""Rounding of what an account pays or receives: fees, funding and interest (issue 14).

An asset's `payment_rounding` says how the exact amount is brought to the asset's precision:

- `payer_pays_up` (the default, DESIGN §4): a debit is rounded up and a credit down, so every
  cut favours the exchange (`round_paid` / `round_received`);
- `half_even`: the nearest step, a tie to the even step ("banker's rounding"), which favours
  nobody on average: 1.125 → 1.12, 1.115 → 1.12 at 2 places.

Either way the counter-account takes the exact amount and `system:rounding` the difference
(`ledger.domain.postings.rounded_change`).
"""

from __future__ import annotations

from decimal import Decimal

from ledger.numbers import ZERO, round_half_even, round_signed
from ledger.rules.terms import PaymentRounding


def payment_change(exact: Decimal, places: int, policy: PaymentRounding) -> Decimal:
    """Return the signed balance change posted for an exact signed change (negative: paid).

    `payer_pays_up`: a debit up, a credit down (DESIGN §4; favours the exchange).
    `half_even`: |change| to the nearest 10^-places, a tie to the even step, sign kept
    (favours nobody on average). Used for fees, funding payments and interest charges; a
    realised PnL or a conversion keeps the DESIGN §4 rule whatever the policy.
    Examples (2 places): −1.125 → payer_pays_up −1.13, half_even −1.12; +1.115 → 1.11 / 1.12.
    Source of the tie rule: https://nutmeg.com/bankers-rounding (1.125 → 1.12, 1.115 → 1.12).
    """
    if policy is PaymentRounding.PAYER_PAYS_UP:
        return round_signed(exact, places)
    magnitude = round_half_even(abs(exact), places)
    return magnitude if exact >= ZERO else -magnitude
