"""The Account aggregate: one stream per account, every money movement an immutable event.

Decide once, evolve always (STYLE §6): a public method validates, calls the rules and builds the
postings, and raises before any event exists; the event's `evolve` only assigns state, so replay
never recomputes an amount. Every event carries `at` (business time) and `hash`, chained to the
previous event's hash.

State is plain dicts of Decimals so that snapshots transcode as they are:
- `balances[asset]` wallet balances (isolated position margin stays part of them, DESIGN 6.11);
- `positions["SYMBOL:cross"]` {symbol, margin_type, qty (signed contracts), entry_price,
  position_margin};
- `leverage[symbol]`, `auto_add[symbol]`, `orders[symbol]` {buy, sell: [qty, price] or None},
  `spot_in_use[asset]` (None = automatic), interest bookkeeping per asset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, replace
from dataclasses import fields as dataclass_fields
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.domain.chain import GENESIS, chain_body, chain_hash, hash_body
from ledger.domain.postings import (
    SYSTEM_CLEARING,
    SYSTEM_CUSTODY,
    SYSTEM_EXCHANGE,
    SYSTEM_FEES,
    SYSTEM_FUNDING,
    SYSTEM_INSURANCE,
    SYSTEM_INTEREST,
    SYSTEM_TRANSIT,
    Posting,
    rounded_change,
    transfer,
)
from ledger.errors import (
    InsufficientBalanceError,
    InsufficientMarginError,
    InvalidInputError,
    LeverageTooHighError,
    ModeChangeBlockedError,
    NotAllowedInModeError,
    OutOfOrderError,
)
from ledger.numbers import PRECISION, ZERO, exact_sum, round_paid, to_str
from ledger.rules import margin as rules
from ledger.rules.close_fee import entry_close_fee, order_cost
from ledger.rules.funding import funding_change, session_settlement_change
from ledger.rules.liquidation import auto_top_up_amount, isolated_liquidation_price
from ledger.rules.liquidation_plan import Plan as LiquidationPlan
from ledger.rules.maintenance import initial_leverage, max_leverage
from ledger.rules.options import option_fee, option_payout
from ledger.rules.positions import (
    apply_fill,
    fill_fee,
    isolated_margin_after,
    isolated_margin_for,
    notional,
)
from ledger.rules.rounding import payment_change
from ledger.rules.terms import CloseFeeBasis, InstrumentTerms, Mode, PaymentRounding
from ledger.times import format_at

CROSS = rules.CROSS
ISOLATED = rules.ISOLATED


def position_key(symbol: str, margin_type: str) -> str:
    return f"{symbol}:{margin_type}"


class Account(Aggregate):
    """A margin account (stream id: uuid5 of its name)."""


    class Event(Aggregate.Event):
        """An account event: business time `at` and the chained `hash`."""

        # The canonical body its hash covers, kept outside the event's fields (a slot, not in
        # `vars()`) for the lean stored form (ledger/application/lean.py, issue 11).
        __slots__ = ("_lean",)

        def __getstate__(self) -> dict[str, Any]:
            return self.__dict__  # copies and pickles carry the fields only

        at: datetime
        hash: str

        def apply(self, aggregate: Any) -> None:
            account: Account = aggregate
            self.evolve(account)
            account.last_at = max(account.last_at, self.at) if account.last_at else self.at
            account.last_hash = self.hash

        def evolve(self, account: Account) -> None:
            """Assign the event's effect (no checks, no rules, no clock)."""

    class AccountOpened(Aggregate.Created, Event):
        name: str
        mode: str

    def __init__(self, at: datetime, name: str, mode: str, hash: str) -> None:  # noqa: A002
        self.name = name
        self.mode = mode
        self.balances: dict[str, Decimal] = {}
        self.positions: dict[str, dict[str, Any]] = {}
        self.leverage: dict[str, Decimal] = {}
        self.auto_add: dict[str, bool] = {}
        self.orders: dict[str, dict[str, list[Decimal] | None]] = {}
        self.spot_in_use: dict[str, Decimal | None] = {}
        self.interest_charged: dict[str, Decimal] = {}
        self.interest_from: dict[str, datetime] = {}
        self.symbols: list[str] = []  # every symbol the account has held, in order
        self.last_at: datetime = at
        self.last_hash: str = hash

    # ------------------------------------------------------------------ creating

    @classmethod
    def open(cls, account_id: Any, at: datetime, name: str, mode: Mode) -> Account:
        fields = {"at": at, "name": name, "mode": mode.value}
        digest = chain_hash(GENESIS, "AccountOpened", 1, fields)
        return cls._create(cls.AccountOpened, id=account_id, hash=digest, **fields)

    def _record(self, event_class: type[Account.Event], **fields: Any) -> None:
        """Trigger an event whose hash chains to the previous one (over every field the
        stored event will hold, defaults included)."""
        defaults = _defaults(event_class)
        complete = {**defaults, **fields} if defaults else fields
        postings = complete.get("postings")
        if postings:
            self._require_exact_balances(postings)
        version = self.version + 1
        body = chain_body(event_class.__name__, version, complete)  # encoded once: hashed, stored
        # The event built as data (what `trigger_event` does, less the dataclass constructor
        # and its checks, which only cost here): the library's bookkeeping, the hash, the
        # fields; its body kept for the lean stored form (issue 11).
        event = object.__new__(event_class)
        timestamp = event_class.create_timestamp()
        object.__setattr__(event, "__dict__", {
            "originator_id": self.id, "originator_version": version, "timestamp": timestamp,
            "hash": hash_body(self.last_hash, body), **complete})
        object.__setattr__(event, "_lean", body)
        event.apply(self)
        self.version = version
        self.modified_on = timestamp
        self._pending_events.append(event)

    def _require_exact_balances(self, postings: Sequence[Posting]) -> None:
        """Refuse (`invalid_input`) postings that would take a balance beyond the 34 digits
        the ledger carries: the ledger's context would round the balance silently while the
        postings stay exact, and the books would no longer sum to zero (issue 10).

        Example: 10^16 + 0.000000000000000001 needs 35 significant digits → refused.
        """
        balances = dict(self.balances)
        for posting in postings:
            if posting.account != self.name:
                continue
            total = exact_sum(balances.get(posting.asset, ZERO), posting.amount)
            if total is None:
                raise InvalidInputError(
                    f"{self.name}: the {posting.asset} balance would need more than "
                    f"{PRECISION} significant digits ({to_str(balances.get(posting.asset, ZERO))}"
                    f" + {to_str(posting.amount)})")
            balances[posting.asset] = total

    # ------------------------------------------------------------------ reading

    def require_not_before(self, at: datetime) -> None:
        """Refuse a command older than the account's last event (`out_of_order`)."""
        if at < self.last_at:
            raise OutOfOrderError(
                f"{self.name}: {format_at(at)} is before its last event at "
                f"{format_at(self.last_at)}"
            )

    def posting_time(self, period: datetime) -> datetime:
        """Return when a periodic event for `period` is posted: the period, or the account's
        last `at` when that is later (a late run, DESIGN 6.11)."""
        return max(period, self.last_at)

    def has_positions(self) -> bool:
        return bool(self.positions)

    def has_open_orders(self) -> bool:
        return any(book.get("buy") or book.get("sell") for book in self.orders.values())

    def position(self, symbol: str, margin_type: str) -> dict[str, Any] | None:
        return self.positions.get(position_key(symbol, margin_type))

    def leverage_for(self, terms: InstrumentTerms) -> Decimal:
        return self.leverage.get(terms.symbol) or initial_leverage(terms.risk_tiers)

    def snapshot(self) -> rules.AccountSnapshot:
        """Return what the margin rules need of this account."""
        positions = [
            rules.PositionState(
                symbol=p["symbol"],
                margin_type=p["margin_type"],
                qty=p["qty"],
                entry_price=p["entry_price"],
                position_margin=p["position_margin"],
                leverage=self.leverage.get(p["symbol"], Decimal(10)),
                auto_add_margin=self.auto_add.get(p["symbol"], False),
            )
            for p in self.positions.values()
        ]
        orders = {
            symbol: rules.OrderBook(
                buy=_order(book.get("buy")), sell=_order(book.get("sell"))
            )
            for symbol, book in self.orders.items()
            if book.get("buy") or book.get("sell")
        }
        return rules.AccountSnapshot(
            mode=Mode(self.mode),
            balances=dict(self.balances),
            positions=positions,
            orders=orders,
            leverage=dict(self.leverage),
            spot_in_use=dict(self.spot_in_use),
        )

    # ------------------------------------------------------------------ mode

    class MarginModeChanged(Event):
        mode: str
        previous_mode: str

        def evolve(self, account: Account) -> None:
            account.mode = self.mode
            account.spot_in_use = {}

    def change_mode(self, at: datetime, mode: Mode, has_debt: bool) -> None:
        """Change the margin mode; refused while positions, open orders or debt remain (§5)."""
        if self.has_positions() or self.has_open_orders() or has_debt:
            what = ("positions" if self.has_positions()
                    else "open orders" if self.has_open_orders() else "debt")
            raise ModeChangeBlockedError(f"{self.name}: cannot change mode with {what}")
        self._record(Account.MarginModeChanged, at=at, mode=mode.value,
                     previous_mode=self.mode)

    # ------------------------------------------------------------------ money in and out

    class MoneyMoved(Event):
        """Base of events that only apply postings."""

        postings: Sequence[Posting]

        def evolve(self, account: Account) -> None:
            account._apply_postings(self.postings)

    class Deposited(MoneyMoved):
        command_id: str
        asset: str
        amount: Decimal

    class Withdrawn(MoneyMoved):
        command_id: str
        asset: str
        amount: Decimal

    class TransferredOut(MoneyMoved):
        command_id: str
        to: str
        asset: str
        amount: Decimal

    class TransferredIn(MoneyMoved):
        command_id: str
        source: str
        asset: str
        amount: Decimal

    class TransferReturned(MoneyMoved):
        """The return leg of a transfer the destination refused (`reason`: its error code)."""

        command_id: str
        to: str
        asset: str
        amount: Decimal
        reason: str

    def _apply_postings(self, postings: Sequence[Posting]) -> None:
        for posting in postings:
            if posting.account == self.name:
                self.balances[posting.asset] = (
                    self.balances.get(posting.asset, ZERO) + posting.amount
                )

    def deposit(self, at: datetime, command_id: str, asset: str, amount: Decimal) -> None:
        postings = transfer(SYSTEM_CUSTODY, self.name, asset, amount)
        self._record(Account.Deposited, at=at, command_id=command_id, asset=asset,
                     amount=amount, postings=postings)

    def require_withdrawable(self, asset: str, amount: Decimal, market: rules.Market) -> None:
        """Refuse a withdrawal above the wallet (`insufficient_balance`) or one that would
        leave `available_usd` below 0 (`insufficient_margin`, i.e. above max_withdrawable)."""
        wallet = self.balances.get(asset, ZERO)
        if amount > wallet:
            raise InsufficientBalanceError(
                f"{self.name}: {to_str(amount)} {asset} > wallet balance {to_str(wallet)}"
            )
        snapshot = self.snapshot()
        after = rules.available_after_withdrawal(snapshot, market, asset, amount)
        if after < ZERO:
            limit = rules.max_withdrawable(snapshot, market, asset)
            raise InsufficientMarginError(
                f"{self.name}: {to_str(amount)} {asset} > max_withdrawable {to_str(limit)}"
            )

    def withdraw(
        self, at: datetime, command_id: str, asset: str, amount: Decimal, market: rules.Market
    ) -> None:
        self.require_withdrawable(asset, amount, market)
        postings = transfer(self.name, SYSTEM_CUSTODY, asset, amount)
        self._record(Account.Withdrawn, at=at, command_id=command_id, asset=asset,
                     amount=amount, postings=postings)

    def transfer_out(
        self, at: datetime, command_id: str, to: str, asset: str, amount: Decimal,
        market: rules.Market,
    ) -> None:
        """The out-leg of a transfer: from this account into `system:transit` (docs/sharding.md)."""
        self.require_withdrawable(asset, amount, market)
        postings = transfer(self.name, SYSTEM_TRANSIT, asset, amount)
        self._record(Account.TransferredOut, at=at, command_id=command_id, to=to, asset=asset,
                     amount=amount, postings=postings)

    def transfer_in(
        self, at: datetime, command_id: str, source: str, asset: str, amount: Decimal,
    ) -> None:
        """The in-leg of a transfer: from `system:transit` into this account (refused, before
        any event, when it is older than this account's last event)."""
        self.require_not_before(at)
        postings = transfer(SYSTEM_TRANSIT, self.name, asset, amount)
        self._record(Account.TransferredIn, at=at, command_id=command_id, source=source,
                     asset=asset, amount=amount, postings=postings)

    def transfer_return(
        self, at: datetime, command_id: str, to: str, asset: str, amount: Decimal, reason: str,
    ) -> None:
        """The return leg: the amount of a refused transfer back from `system:transit`. Posted
        at the transfer's `at`, which the out-leg already made this account's last time."""
        postings = transfer(SYSTEM_TRANSIT, self.name, asset, amount)
        self._record(Account.TransferReturned, at=max(at, self.last_at), command_id=command_id,
                     to=to, asset=asset, amount=amount, reason=reason, postings=postings)

    # ------------------------------------------------------------------ trading

    class LeverageChanged(Event):
        symbol: str
        leverage: Decimal

        def evolve(self, account: Account) -> None:
            account.leverage[self.symbol] = self.leverage

    class Filled(Event):
        command_id: str
        symbol: str
        margin_type: str
        side: str
        qty: Decimal
        price: Decimal
        liquidity: str
        liquidation: bool
        realized_pnl: Decimal
        position_qty: Decimal
        entry_price: Decimal
        position_margin: Decimal
        postings: Sequence[Posting]
        # issue 14 (convB): IM + open fee + close fee at the bankruptcy price of what the fill
        # opened. No class_version bump: an event stored before it has no such field (reads
        # None) and its hash covers exactly the fields it holds.
        order_cost: Decimal | None = None

        def evolve(self, account: Account) -> None:
            account._apply_postings(self.postings)
            key = position_key(self.symbol, self.margin_type)
            if self.symbol not in account.symbols:
                account.symbols.append(self.symbol)
            if self.position_qty == ZERO:
                account.positions.pop(key, None)
                return
            account.positions[key] = {
                "symbol": self.symbol,
                "margin_type": self.margin_type,
                "qty": self.position_qty,
                "entry_price": self.entry_price,
                "position_margin": self.position_margin,
            }

    class FeeCharged(MoneyMoved):
        command_id: str
        symbol: str
        asset: str
        amount: Decimal  # the fee; negative is a rebate

    def set_leverage(self, at: datetime, terms: InstrumentTerms, leverage: Decimal) -> None:
        """Set the account's leverage on a symbol, checked against the tier of the position."""
        held = self._held_notional(terms, None)
        self._check_leverage(terms, leverage, held)
        if leverage != self.leverage_for(terms) or terms.symbol not in self.leverage:
            self._record(Account.LeverageChanged, at=at, symbol=terms.symbol, leverage=leverage)

    def _held_notional(self, terms: InstrumentTerms, price: Decimal | None) -> Decimal:
        total = ZERO
        for margin_type in (CROSS, ISOLATED):
            held = self.position(terms.symbol, margin_type)
            if held:
                at_price = price or held["entry_price"]
                total = max(total, notional(held["qty"], terms.contract_size, at_price,
                                            terms.is_inverse))
        return total

    def _check_leverage(self, terms: InstrumentTerms, leverage: Decimal, held: Decimal) -> None:
        allowed = max_leverage(held, terms.risk_tiers)
        if leverage > allowed:
            raise LeverageTooHighError(
                f"{self.name}: leverage {to_str(leverage)} on {terms.symbol} > "
                f"{to_str(allowed)} allowed for a notional of {to_str(held)}"
            )

    def fill(
        self,
        *,
        at: datetime,
        command_id: str,
        terms: InstrumentTerms,
        side: str,
        qty: Decimal,
        price: Decimal,
        liquidity: str,
        fee: Decimal | None,
        margin_type: str,
        leverage: Decimal | None,
        liquidation: bool,
        precision: int,
        rounding: PaymentRounding = PaymentRounding.PAYER_PAYS_UP,
        underlying: Decimal | None = None,
    ) -> None:
        """Record a fill: open, add, reduce, close or flip a one-way position (DESIGN §6.4),
        with its fee and realised PnL posted in the settle asset. An option's fill pays or
        receives its premium instead, and its fee is capped (`_option_fill`, issue 15);
        `underlying` is then the base's price in the settle asset."""
        if terms.is_option:
            assert underlying is not None, terms.symbol
            self._option_fill(at=at, command_id=command_id, terms=terms, side=side, qty=qty,
                              price=price, liquidity=liquidity, fee=fee,
                              liquidation=liquidation, precision=precision,
                              underlying=underlying, rounding=rounding)
            return
        signed = qty if side == "buy" else -qty
        held = self.position(terms.symbol, margin_type)
        held_qty = held["qty"] if held else ZERO
        held_entry = held["entry_price"] if held else ZERO
        lev = leverage if leverage is not None else self.leverage_for(terms)
        outcome = apply_fill(held_qty, held_entry, signed, price, terms.contract_size,
                             terms.is_inverse)
        after = notional(outcome.qty, terms.contract_size, price, terms.is_inverse)
        self._check_leverage(terms, lev, after)
        position_margin = ZERO
        if margin_type == ISOLATED and outcome.qty != ZERO:
            position_margin = self._isolated_margin_after(held, outcome, terms, price, lev)
        if fee is None:
            rate = terms.maker_fee_rate if liquidity == "maker" else terms.taker_fee_rate
            fee = fill_fee(qty, terms.contract_size, price, rate, terms.is_inverse)
        cost = self._order_cost(terms, signed, outcome.opened_qty, price, lev, fee)
        settle = terms.settle
        postings = rounded_change(self.name, SYSTEM_CLEARING, settle, outcome.realized_pnl,
                                  precision)
        if self.leverage.get(terms.symbol) != lev:
            # A fill's leverage (or, on a first fill without one, the initial setting) becomes
            # the account's setting for the symbol (DESIGN 6.11).
            self._record(Account.LeverageChanged, at=at, symbol=terms.symbol, leverage=lev)
        self._record(
            Account.Filled, at=at, command_id=command_id, symbol=terms.symbol,
            margin_type=margin_type, side=side, qty=qty, price=price, liquidity=liquidity,
            liquidation=liquidation, realized_pnl=outcome.realized_pnl,
            position_qty=outcome.qty, entry_price=outcome.entry_price,
            position_margin=position_margin, postings=postings, order_cost=cost,
        )
        if fee != ZERO:
            fee_postings = rounded_change(self.name, SYSTEM_FEES, settle, -fee, precision,
                                          rounding)
            self._record(Account.FeeCharged, at=at, command_id=command_id,
                         symbol=terms.symbol, asset=settle, amount=fee, postings=fee_postings)

    # --- options (issue 15, docs/options.md) ------------------------------------------------

    class PremiumExchanged(MoneyMoved):
        """An option fill's premium: `amount` is the signed change of the account's balance
        (a buyer pays, a writer receives) before rounding; `postings` as posted."""

        command_id: str
        symbol: str
        asset: str
        amount: Decimal

    def _option_fill(
        self, *, at: datetime, command_id: str, terms: InstrumentTerms, side: str,
        qty: Decimal, price: Decimal, liquidity: str, fee: Decimal | None, liquidation: bool,
        precision: int, underlying: Decimal,
        rounding: PaymentRounding = PaymentRounding.PAYER_PAYS_UP,
    ) -> None:
        """Record an option fill: the position changes as a linear contract's would (entry =
        average premium), the premium `qty × size × price` moves against `system:clearing`
        (no realised PnL: the premium is the cash flow), then the fee: `fee` if given, else
        `option_fee` (rate × underlying value, capped at fee_cap_rate × premium)."""
        signed = qty if side == "buy" else -qty
        held = self.position(terms.symbol, CROSS)
        outcome = apply_fill(held["qty"] if held else ZERO, held["entry_price"] if held else ZERO,
                             signed, price, terms.contract_size, False)
        premium = -signed * terms.contract_size * price
        postings = rounded_change(self.name, SYSTEM_CLEARING, terms.settle, premium, precision)
        if terms.symbol not in self.leverage:  # an option's leverage is its tiers' (1)
            self._record(Account.LeverageChanged, at=at, symbol=terms.symbol,
                         leverage=self.leverage_for(terms))
        self._record(
            Account.Filled, at=at, command_id=command_id, symbol=terms.symbol,
            margin_type=CROSS, side=side, qty=qty, price=price, liquidity=liquidity,
            liquidation=liquidation, realized_pnl=ZERO, position_qty=outcome.qty,
            entry_price=outcome.entry_price, position_margin=ZERO, postings=[],
        )
        self._record(Account.PremiumExchanged, at=at, command_id=command_id,
                     symbol=terms.symbol, asset=terms.settle, amount=premium, postings=postings)
        if fee is None:
            rate = terms.maker_fee_rate if liquidity == "maker" else terms.taker_fee_rate
            fee = option_fee(qty, terms.contract_size, price, underlying, rate,
                             terms.fee_cap_rate, terms.coin_margined)
        if fee != ZERO:
            fee_postings = rounded_change(self.name, SYSTEM_FEES, terms.settle, -fee, precision,
                                          rounding)
            self._record(Account.FeeCharged, at=at, command_id=command_id,
                         symbol=terms.symbol, asset=terms.settle, amount=fee,
                         postings=fee_postings)

    class OptionSettled(MoneyMoved):
        """An option's cash settlement at expiry: `payout` is the signed change of the
        account's balance (holder receives, writer pays) before rounding."""

        period: datetime
        symbol: str
        side: str
        qty: Decimal
        entry_price: Decimal
        delivery_price: Decimal
        payout: Decimal

        def evolve(self, account: Account) -> None:
            account._apply_postings(self.postings)
            account.positions.pop(position_key(self.symbol, CROSS), None)

    def settle_option(self, *, period: datetime, terms: InstrumentTerms, price: Decimal,
                      precision: int) -> None:
        """Settle a held option in cash at the delivery price (the base's index at expiry):
        `q × size × intrinsic`, in the settle asset (a coin-margined option pays the intrinsic
        value divided by the price, in coin); the position leaves the book."""
        held = self.position(terms.symbol, CROSS)
        if held is None:
            return
        qty = held["qty"]
        payout = qty * terms.contract_size * option_payout(terms, price)
        postings = rounded_change(self.name, SYSTEM_CLEARING, terms.settle, payout, precision)
        self._record(Account.OptionSettled, at=self.posting_time(period), period=period,
                     symbol=terms.symbol, side="long" if qty > ZERO else "short",
                     qty=abs(qty), entry_price=held["entry_price"], delivery_price=price,
                     payout=payout, postings=postings)

    def _isolated_margin_after(
        self, held: Mapping[str, Any] | None, outcome: Any, terms: InstrumentTerms,
        price: Decimal, leverage: Decimal,
    ) -> Decimal:
        """Allocate margin for what opens, release it pro rata for what closes (§6.11).
        Under `close_fee_basis = reserved` (Phemex, issue 14) what opens also reserves its fee
        to close at the bankruptcy price inside the position margin."""
        margin = isolated_margin_after(
            held["position_margin"] if held else ZERO, held["qty"] if held else ZERO,
            outcome.closed_qty, outcome.opened_qty, terms.contract_size, price, leverage,
            terms.is_inverse)
        if (outcome.opened_qty and terms.close_fee_in_mm
                and terms.close_fee_basis is CloseFeeBasis.RESERVED):
            opened = outcome.opened_qty if outcome.qty > ZERO else -outcome.opened_qty
            margin += entry_close_fee(opened, terms.contract_size, price, leverage,
                                      terms.taker_fee_rate, terms.is_inverse)
        return margin

    @staticmethod
    def _order_cost(terms: InstrumentTerms, signed: Decimal, opened_qty: Decimal,
                    price: Decimal, leverage: Decimal, fee: Decimal) -> Decimal:
        """What the opened part cost (issue 14, Bybit/Phemex "Order Cost"): its initial margin,
        its share of the fill's fee and its fee to close at the bankruptcy price."""
        if opened_qty == ZERO:
            return ZERO
        opened = opened_qty if signed > ZERO else -opened_qty
        return order_cost(
            isolated_margin_for(opened_qty, terms.contract_size, price, leverage,
                                terms.is_inverse),
            fee * opened_qty / abs(signed),
            entry_close_fee(opened, terms.contract_size, price, leverage,
                            terms.taker_fee_rate, terms.is_inverse))

    class OpenOrdersChanged(Event):
        symbol: str
        buy_qty: Decimal | None
        buy_price: Decimal | None
        sell_qty: Decimal | None
        sell_price: Decimal | None

        def evolve(self, account: Account) -> None:
            buy = (None if self.buy_qty is None or self.buy_price is None
                   else [self.buy_qty, self.buy_price])
            sell = (None if self.sell_qty is None or self.sell_price is None
                    else [self.sell_qty, self.sell_price])
            if buy is None and sell is None:
                account.orders.pop(self.symbol, None)
            else:
                account.orders[self.symbol] = {"buy": buy, "sell": sell}

    def set_open_orders(
        self, at: datetime, symbol: str, buy: tuple[Decimal, Decimal] | None,
        sell: tuple[Decimal, Decimal] | None,
    ) -> None:
        self._record(
            Account.OpenOrdersChanged, at=at, symbol=symbol,
            buy_qty=buy[0] if buy else None, buy_price=buy[1] if buy else None,
            sell_qty=sell[0] if sell else None, sell_price=sell[1] if sell else None,
        )

    # ------------------------------------------------------------------ isolated margin

    class AutoAddMarginSet(Event):
        symbol: str
        enabled: bool

        def evolve(self, account: Account) -> None:
            account.auto_add[self.symbol] = self.enabled

    def set_auto_add_margin(self, at: datetime, symbol: str, enabled: bool) -> None:
        self._record(Account.AutoAddMarginSet, at=at, symbol=symbol, enabled=enabled)

    class PositionMarginChanged(Event):
        """Base of events that move margin into or out of an isolated position: not a
        posting, the margin stays part of the wallet balance (DESIGN 6.11)."""

        symbol: str
        amount: Decimal
        position_margin: Decimal
        liquidation_price: Decimal | None

        def evolve(self, account: Account) -> None:
            held = account.positions.get(position_key(self.symbol, ISOLATED))
            if held is not None:
                held["position_margin"] = self.position_margin

    class IsolatedMarginAdjusted(PositionMarginChanged):
        command_id: str

    class MarginToppedUp(PositionMarginChanged):
        margin_type: str
        mark_price: Decimal

    def isolated_view(self, symbol: str, terms: InstrumentTerms,
                      margin: Decimal | None = None) -> rules.PositionState:
        held = self.position(symbol, ISOLATED)
        assert held is not None
        return rules.PositionState(
            symbol=symbol, margin_type=ISOLATED, qty=held["qty"],
            entry_price=held["entry_price"],
            position_margin=held["position_margin"] if margin is None else margin,
            leverage=self.leverage_for(terms), auto_add_margin=self.auto_add.get(symbol, False),
        )

    def adjust_isolated_margin(
        self, *, at: datetime, command_id: str, terms: InstrumentTerms, amount: Decimal,
        market: rules.Market,
    ) -> None:
        """Add margin from the available balance, or remove it down to the initial margin."""
        held = self.position(terms.symbol, ISOLATED)
        if held is None:
            raise InvalidInputError(f"{self.name} has no isolated position on {terms.symbol}")
        margin = held["position_margin"]
        if amount > ZERO:
            free = rules.available_after_withdrawal(self.snapshot(), market, terms.settle, ZERO)
            if amount > free:
                raise InsufficientMarginError(
                    f"{self.name}: adding {to_str(amount)} {terms.settle} > available "
                    f"{to_str(max(free, ZERO))}")
        else:
            leverage = self.leverage_for(terms)
            initial = isolated_margin_for(held["qty"], terms.contract_size, held["entry_price"],
                                          leverage, terms.is_inverse)
            if terms.close_fee_in_mm and terms.close_fee_basis is CloseFeeBasis.RESERVED:
                # issue 14 (Phemex): the reserved fee to close stays in the position margin
                initial += entry_close_fee(held["qty"], terms.contract_size,
                                           held["entry_price"], leverage,
                                           terms.taker_fee_rate, terms.is_inverse)
            if margin + amount < initial:
                raise InsufficientMarginError(
                    f"{self.name}: removing {to_str(-amount)} {terms.settle} would leave "
                    f"{to_str(margin + amount)} < initial margin {to_str(initial)}")
        after = margin + amount
        state = self.isolated_view(terms.symbol, terms, after)
        mark = market.mark(terms.symbol, held["entry_price"])
        price = isolated_liquidation_price(rules.isolated_view(state, terms), mark)
        self._record(Account.IsolatedMarginAdjusted, at=at, command_id=command_id,
                     symbol=terms.symbol, amount=amount, position_margin=after,
                     liquidation_price=price)

    def top_up(self, *, at: datetime, terms: InstrumentTerms, mark: Decimal,
               available: Decimal) -> bool:
        """Top an isolated position up at the sweep when the mark has reached its liquidation
        price (DESIGN §6.5): its MM, or E·Q·F/leverage, or what is left. True if it did."""
        state = self.isolated_view(terms.symbol, terms)
        view = rules.isolated_view(state, terms)
        amount = auto_top_up_amount(view, mark, terms.auto_add_amount, available)
        if amount <= ZERO:
            return False
        after = state.position_margin + amount
        price = isolated_liquidation_price(rules.isolated_view(
            self.isolated_view(terms.symbol, terms, after), terms), mark)
        self._record(Account.MarginToppedUp, at=at, symbol=terms.symbol, margin_type=ISOLATED,
                     amount=amount, position_margin=after, liquidation_price=price,
                     mark_price=mark)
        return True

    # ------------------------------------------------------------------ signals

    class MarginCallIssued(Event):
        margin_ratio: Decimal | None
        margin_level: Decimal | None
        effective_equity_usd: Decimal
        maintenance_margin_usd: Decimal

    class LiquidationTriggered(Event):
        """A signal: nothing changes until liquidation fills arrive (DESIGN 6.11). Cross:
        the ratio it was decided on; isolated: the symbol, its liquidation price and mark;
        portfolio: the level and a summary of the plan that follows (contract/portfolio.md)."""

        margin_type: str
        symbol: str | None
        liquidation_price: Decimal | None
        mark_price: Decimal | None
        margin_ratio: Decimal | None
        margin_level: Decimal | None
        effective_equity_usd: Decimal | None
        maintenance_margin_usd: Decimal | None
        mode: str | None = None
        target_level: Decimal | None = None
        steps: int | None = None
        final_margin_level: Decimal | None = None
        target_reached: bool | None = None

    class LiquidationStepPlanned(Event):
        step: int
        stage: str
        underlying: str
        symbol: str
        side: str
        qty: Decimal
        price: Decimal
        fee: Decimal
        margin_level_after: Decimal | None

    def plan_liquidation(self, at: datetime, margin: rules.MarginFigures,
                         plan: LiquidationPlan, target_level: Decimal) -> None:
        """Signal a portfolio liquidation and record its staged plan (PORTFOLIO-MARGIN
        §10.10): the trigger, then one event per leg."""
        when = self.posting_time(at)
        self._record(Account.LiquidationTriggered, at=when, margin_type=CROSS, symbol=None,
                     liquidation_price=None, mark_price=None, margin_ratio=margin.margin_ratio,
                     margin_level=margin.margin_level,
                     effective_equity_usd=margin.effective_equity_usd,
                     maintenance_margin_usd=margin.maintenance_margin_usd, mode=self.mode,
                     target_level=target_level, steps=plan.steps,
                     final_margin_level=plan.final_margin_level,
                     target_reached=plan.target_reached)
        for leg in plan.legs:
            self._record(Account.LiquidationStepPlanned, at=when, step=leg.step,
                         stage=leg.stage, underlying=leg.underlying, symbol=leg.symbol,
                         side=leg.side, qty=leg.qty, price=leg.price, fee=leg.fee,
                         margin_level_after=leg.margin_level_after)

    def issue_margin_call(self, at: datetime, margin: rules.MarginFigures) -> None:
        self._record(Account.MarginCallIssued, at=self.posting_time(at),
                     margin_ratio=margin.margin_ratio, margin_level=margin.margin_level,
                     effective_equity_usd=margin.effective_equity_usd,
                     maintenance_margin_usd=margin.maintenance_margin_usd)

    def trigger_cross_liquidation(self, at: datetime, margin: rules.MarginFigures) -> None:
        self._record(Account.LiquidationTriggered, at=self.posting_time(at), margin_type=CROSS,
                     symbol=None, liquidation_price=None, mark_price=None,
                     margin_ratio=margin.margin_ratio, margin_level=margin.margin_level,
                     effective_equity_usd=margin.effective_equity_usd,
                     maintenance_margin_usd=margin.maintenance_margin_usd)

    def trigger_isolated_liquidation(self, at: datetime, symbol: str, price: Decimal,
                                     mark: Decimal) -> None:
        self._record(Account.LiquidationTriggered, at=self.posting_time(at),
                     margin_type=ISOLATED, symbol=symbol, liquidation_price=price,
                     mark_price=mark, margin_ratio=None, margin_level=None,
                     effective_equity_usd=None, maintenance_margin_usd=None)

    class InsuranceCovered(MoneyMoved):
        asset: str
        amount: Decimal
        shortfall: Decimal

    def cover_shortfall(self, at: datetime, asset: str, shortfall: Decimal,
                        precision: int) -> None:
        """Cover what a liquidation left below zero from `system:insurance`, rounded up so
        that the account is not left below zero."""
        amount = round_paid(shortfall, precision)
        postings = transfer(SYSTEM_INSURANCE, self.name, asset, amount)
        self._record(Account.InsuranceCovered, at=at, asset=asset, amount=amount,
                     shortfall=shortfall, postings=postings)

    # ------------------------------------------------------------------ debt

    class DebtRepaid(MoneyMoved):
        command_id: str
        asset: str
        amount: Decimal  # of the debt coin, received
        with_asset: str
        with_amount: Decimal  # given, rounded up
        asset_index: Decimal
        with_index: Decimal

    class AutoExchanged(MoneyMoved):
        asset: str
        amount: Decimal  # of the negative coin, received
        with_asset: str
        with_amount: Decimal  # given, rounded up
        discount: Decimal
        asset_index: Decimal
        with_index: Decimal

    def _conversion_postings(
        self, asset: str, amount: Decimal, with_asset: str, with_exact: Decimal,
        with_precision: int,
    ) -> list[Posting]:
        """The account receives `amount` of `asset` and gives `with_exact` of `with_asset`
        rounded up; both legs against `system:exchange` (DESIGN §3, §4)."""
        given = rounded_change(self.name, SYSTEM_EXCHANGE, with_asset, -with_exact,
                               with_precision)
        return [*transfer(SYSTEM_EXCHANGE, self.name, asset, amount), *given]

    def repay(
        self, *, at: datetime, command_id: str, asset: str, amount: Decimal, with_asset: str,
        market: rules.Market, with_precision: int,
    ) -> None:
        """Convert `with_asset` at index prices into the debt coin (seed 000 §4)."""
        asset_index = market.index(asset)
        with_index = market.index(with_asset)
        assert asset_index is not None and with_index is not None
        collateral = rules.evaluate(self.snapshot(), market, limits=False).collateral
        debt = -collateral[asset].equity if asset in collateral else ZERO
        if amount > debt:
            raise InvalidInputError(
                f"{self.name}: repaying {to_str(amount)} {asset} > debt {to_str(max(debt, ZERO))}")
        exact = amount * asset_index / with_index
        given = round_paid(exact, with_precision)
        wallet = self.balances.get(with_asset, ZERO)
        if given > wallet:
            raise InsufficientBalanceError(
                f"{self.name}: repaying needs {to_str(given)} {with_asset} > wallet "
                f"{to_str(wallet)}")
        before = rules.evaluate(self.snapshot(), market, limits=False).margin.available_usd
        balances = dict(self.balances)
        balances[asset] = balances.get(asset, ZERO) + amount
        balances[with_asset] = wallet - given
        trial = _with_balances(self.snapshot(), balances)
        after = rules.evaluate(trial, market, limits=False).margin.available_usd
        if after < ZERO and after < before:
            raise InsufficientMarginError(
                f"{self.name}: repaying with {with_asset} would leave available "
                f"{to_str(after)} USD")
        postings = self._conversion_postings(asset, amount, with_asset, exact, with_precision)
        self._record(Account.DebtRepaid, at=at, command_id=command_id, asset=asset,
                     amount=amount, with_asset=with_asset, with_amount=given,
                     asset_index=asset_index, with_index=with_index, postings=postings)

    def auto_exchange(
        self, *, at: datetime, asset: str, received: Decimal, with_asset: str,
        with_exact: Decimal, discount: Decimal, asset_index: Decimal, with_index: Decimal,
        with_precision: int,
    ) -> None:
        postings = self._conversion_postings(asset, received, with_asset, with_exact,
                                             with_precision)
        self._record(Account.AutoExchanged, at=self.posting_time(at), asset=asset,
                     amount=received, with_asset=with_asset,
                     with_amount=round_paid(with_exact, with_precision), discount=discount,
                     asset_index=asset_index, with_index=with_index, postings=postings)

    # ------------------------------------------------------------------ portfolio

    class SpotInUseSet(Event):
        asset: str
        amount: Decimal | None  # None: automatic

        def evolve(self, account: Account) -> None:
            if self.amount is None:
                account.spot_in_use.pop(self.asset, None)
            else:
                account.spot_in_use[self.asset] = self.amount

    def set_spot_in_use(self, at: datetime, asset: str, amount: Decimal | None) -> None:
        if self.mode != Mode.PORTFOLIO.value:
            raise NotAllowedInModeError(f"{self.name} is not in portfolio mode")
        self._record(Account.SpotInUseSet, at=at, asset=asset, amount=amount)

    class FutureDelivered(MoneyMoved):
        period: datetime
        symbol: str
        margin_type: str
        side: str
        qty: Decimal
        entry_price: Decimal
        delivery_price: Decimal
        realized_pnl: Decimal
        fee: Decimal

        def evolve(self, account: Account) -> None:
            account._apply_postings(self.postings)
            account.positions.pop(position_key(self.symbol, self.margin_type), None)

    def deliver(self, *, period: datetime, terms: InstrumentTerms, price: Decimal,
                precision: int,
                rounding: PaymentRounding = PaymentRounding.PAYER_PAYS_UP) -> None:
        """Close every position on a delivered future at the delivery price, posting its
        realised PnL and the delivery fee (PORTFOLIO-MARGIN §10.11)."""
        for margin_type in (CROSS, ISOLATED):
            held = self.position(terms.symbol, margin_type)
            if held is None:
                continue
            qty = held["qty"]
            outcome = apply_fill(qty, held["entry_price"], -qty, price, terms.contract_size,
                                 terms.is_inverse)
            fee = fill_fee(qty, terms.contract_size, price, terms.delivery_fee_rate,
                           terms.is_inverse)
            postings = rounded_change(self.name, SYSTEM_CLEARING, terms.settle,
                                      outcome.realized_pnl, precision)
            if fee != ZERO:
                postings += rounded_change(self.name, SYSTEM_FEES, terms.settle, -fee, precision,
                                           rounding)
            self._record(Account.FutureDelivered, at=self.posting_time(period), period=period,
                         symbol=terms.symbol, margin_type=margin_type,
                         side="long" if qty > ZERO else "short", qty=abs(qty),
                         entry_price=held["entry_price"], delivery_price=price,
                         realized_pnl=outcome.realized_pnl, fee=fee, postings=postings)

    # ------------------------------------------------------------------ periodic

    class FundingSettled(MoneyMoved):
        period: datetime
        symbol: str
        margin_type: str
        qty: Decimal
        rate: Decimal
        mark_price: Decimal
        amount: Decimal  # signed change of the balance, as posted (negative: paid)

    def settle_funding(
        self, *, period: datetime, terms: InstrumentTerms, margin_type: str, qty: Decimal,
        mark: Decimal, rate: Decimal, precision: int,
        rounding: PaymentRounding = PaymentRounding.PAYER_PAYS_UP,
    ) -> None:
        """Post one funding payment (DESIGN §6.6); nothing for a zero amount. `rate` is the
        rate applied to this interval (scaled from its quoted basis, issue 14)."""
        change = funding_change(qty, terms.contract_size, mark, rate, terms.is_inverse)
        if change == ZERO:
            return
        postings = rounded_change(self.name, SYSTEM_FUNDING, terms.settle, change, precision,
                                  rounding)
        posted = sum((p.amount for p in postings if p.account == self.name), ZERO)
        self._record(Account.FundingSettled, at=self.posting_time(period), period=period,
                     symbol=terms.symbol, margin_type=margin_type, qty=qty, rate=rate,
                     mark_price=mark, amount=posted, postings=postings)

    class SessionSettled(MoneyMoved):
        period: datetime
        symbol: str
        margin_type: str
        mark_price: Decimal
        previous_entry_price: Decimal
        amount: Decimal

        def evolve(self, account: Account) -> None:
            account._apply_postings(self.postings)
            held = account.positions.get(position_key(self.symbol, self.margin_type))
            if held is not None:
                held["entry_price"] = self.mark_price

    def settle_session(
        self, *, period: datetime, terms: InstrumentTerms, margin_type: str, mark: Decimal,
        precision: int,
    ) -> None:
        """Move the session's PnL to the wallet and reset the entry to the mark (§6.7)."""
        held = self.position(terms.symbol, margin_type)
        if held is None:
            return
        change = session_settlement_change(held["qty"], terms.contract_size, mark,
                                           held["entry_price"])
        if change == ZERO and held["entry_price"] == mark:
            return
        postings = rounded_change(self.name, SYSTEM_CLEARING, terms.settle, change, precision)
        posted = sum((p.amount for p in postings if p.account == self.name), ZERO)
        self._record(Account.SessionSettled, at=self.posting_time(period), period=period,
                     symbol=terms.symbol, margin_type=margin_type, mark_price=mark,
                     previous_entry_price=held["entry_price"], amount=posted,
                     postings=postings)

    class InterestCharged(MoneyMoved):
        period: datetime
        asset: str
        amount: Decimal  # charged, rounded up
        accrued: Decimal  # exact

        def evolve(self, account: Account) -> None:
            account._apply_postings(self.postings)
            account.interest_charged[self.asset] = (
                account.interest_charged.get(self.asset, ZERO) + self.amount
            )
            account.interest_from[self.asset] = self.period

    def charge_interest(
        self, *, period: datetime, asset: str, accrued: Decimal, precision: int,
        rounding: PaymentRounding = PaymentRounding.PAYER_PAYS_UP,
    ) -> None:
        """Charge interest accrued up to `period` as one amount, rounded up (§6.8) or as the
        asset's `payment_rounding` says (issue 14)."""
        if accrued <= ZERO:
            return
        postings = rounded_change(self.name, SYSTEM_INTEREST, asset, -accrued, precision,
                                  rounding)
        amount = -payment_change(-accrued, precision, rounding)
        if amount == ZERO:
            return  # half-even can round a tiny accrual to nothing: nothing to charge
        self._record(Account.InterestCharged, at=self.posting_time(period), period=period,
                     asset=asset, amount=amount, accrued=accrued, postings=postings)


@cache
def _defaults(event_class: type[Any]) -> dict[str, Any]:
    """Return the event class's field defaults (fields a caller may leave out)."""
    return {
        f.name: f.default for f in dataclass_fields(event_class)
        if f.default is not MISSING and f.name not in ("timestamp", "hash")
    }


def _with_balances(
    snapshot: rules.AccountSnapshot, balances: dict[str, Decimal]
) -> rules.AccountSnapshot:
    return replace(snapshot, balances=balances)


def _order(pair: list[Decimal] | None) -> rules.RestingOrder | None:
    if not pair:
        return None
    return rules.RestingOrder(qty=pair[0], price=pair[1])

