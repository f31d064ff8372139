"""The ledger application: one method per command, every touched aggregate saved together.

Each method reads top to bottom in the contract's check order (DESIGN 6.11): shape (the command
model) → idempotency → `unknown_*` → checks that need reference data → `out_of_order` →
business rules → events. Nothing is recorded before every check has passed, so a rejected command
changes nothing.

Commands are applied to aggregates held in memory and written in batches: inside
`with ledger.batch():` many commands share one transaction (one `save()` of every aggregate they
touched, with the inline index rows); outside, each command is saved on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import JSONTranscoder, Transcoding

from ledger.application import commands as c
from ledger.application.reference import AssetHistory, InstrumentHistory, ReferenceData
from ledger.application.store import IndexQueries, SideRows, environment
from ledger.domain.account import CROSS, ISOLATED, Account
from ledger.domain.chain import content_hash
from ledger.domain.ids import account_id, asset_id, instrument_id, portfolio_settings_id
from ledger.domain.postings import Posting
from ledger.domain.reference import Asset, Instrument, Reference, Settings
from ledger.domain.terms import (
    asset_to_dict,
    instrument_to_dict,
    portfolio_to_dict,
    risk_unit_to_dict,
)
from ledger.errors import (
    AccountExistsError,
    IdConflictError,
    InsufficientEquityError,
    InvalidInputError,
    NoPriceError,
    NotAllowedInModeError,
    UnknownAccountError,
    UnknownAssetError,
    UnknownSymbolError,
)
from ledger.numbers import ZERO, significant_places, to_str
from ledger.rules import margin as rules
from ledger.rules.funding import is_funding_time
from ledger.rules.maintenance import derived_deductions
from ledger.rules.terms import (
    STABLECOINS,
    AssetTerms,
    AutoAddAmount,
    CollateralTier,
    FreeMode,
    InstrumentTerms,
    InterestTerms,
    Kind,
    MmBasis,
    Mode,
    MultiplierTier,
    PortfolioTerms,
    RateBand,
    RiskTier,
    RiskUnitTerms,
    TierBasis,
)
from ledger.times import format_at, to_micros

SNAPSHOT_EVERY = 100  # account events between snapshots: a replay reads at most this many


class PostingAsList(Transcoding):
    type = Posting
    name = "posting"

    def encode(self, obj: Posting) -> list[str]:
        return [obj.account, obj.asset, str(obj.amount)]

    def decode(self, data: list[str]) -> Posting:
        return Posting(data[0], data[1], Decimal(data[2]))


APPLIED = "applied"
ACKNOWLEDGED = "acknowledged"


class Ledger(Application[UUID]):
    """The margin ledger (an eventsourcing Application)."""

    name = "Ledger"

    def __init__(self, url: str = "sqlite:///ledger.db", env: dict[str, str] | None = None):
        self.url = url
        merged = environment(url)
        if env:
            merged.update(env)
        super().__init__(env=merged)
        self.index: IndexQueries = self.recorder  # type: ignore[assignment]
        self.reference = ReferenceData()
        self._accounts: dict[UUID, Account] = {}
        self._refs: dict[UUID, Reference] = {}
        self._loaded_refs: set[UUID] = set()
        self._known_streams: dict[str, set[str]] = {}
        self._holders: dict[str, set[str]] = {}
        self._touched: dict[UUID, Aggregate] = {}
        self._versions_before: dict[UUID, int] = {}
        self._side = SideRows()
        self._keys: dict[str, str] = {}  # idempotency keys seen (store or this batch)
        self._depth = 0
        self.flush_listeners: list[Callable[[], None]] = []
        self.handlers: dict[str, Callable[[Any], str]] = {
            "asset": self.asset,
            "instrument": self.instrument,
            "mark_price": self.mark_price,
            "index_price": self.index_price,
            "funding_rate": self.funding_rate,
            "risk_unit": self.risk_unit,
            "portfolio_margin": self.portfolio_margin,
            "open_account": self.open_account,
            "change_mode": self.change_mode,
            "deposit": self.deposit,
            "withdraw": self.withdraw,
            "transfer": self.transfer,
            "fill": self.fill,
            "open_orders": self.open_orders,
            "set_leverage": self.set_leverage,
            "settle_funding": self.settle_funding,
        }

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(PostingAsList())

    # ------------------------------------------------------------------ batches

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Apply the commands inside in one transaction (written when the block ends)."""
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1  # nothing is written: the caller decides (discard or retry)
            raise
        self._depth -= 1
        if self._depth == 0:
            self.flush()

    def handle(self, command: c.Command) -> str:
        """Apply one command; return "applied" or "acknowledged" (a repeat)."""
        handler = self.handlers.get(command.type)
        if handler is None:
            raise InvalidInputError(f"command type {command.type!r} is not supported yet")
        outcome = handler(command)
        if self._depth == 0:
            self.flush()
        return outcome

    def flush(self) -> None:
        """Write every touched aggregate and the index rows in one transaction."""
        if not self._touched and not self._side:
            return
        aggregates = list(self._touched.values())
        side = self._side
        for aggregate in aggregates:
            stream = aggregate.id.hex
            for event in aggregate.pending_events:
                side.events.append((stream, event.originator_version, to_micros(event.at),
                                    type(event).__name__))
        self.save(*aggregates, side=side)
        self._snapshot(aggregates)
        self._touched = {}
        self._versions_before = {}
        self._side = SideRows()
        for listener in self.flush_listeners:
            listener()

    def discard(self) -> None:
        """Forget everything not yet written (after an internal error)."""
        self._accounts.clear()
        self._refs.clear()
        self._loaded_refs.clear()
        self.reference = ReferenceData()
        self._known_streams.clear()
        self._holders.clear()
        self._touched = {}
        self._versions_before = {}
        self._side = SideRows()
        self._keys.clear()

    def _snapshot(self, aggregates: list[Aggregate]) -> None:
        if self.snapshots is None:
            return
        for aggregate in aggregates:
            if not isinstance(aggregate, Account):
                continue
            before = self._versions_before.get(aggregate.id, aggregate.version)
            if aggregate.version // SNAPSHOT_EVERY > before // SNAPSHOT_EVERY:
                snapshot = Account.Snapshot.take(aggregate)
                self.snapshots.put([snapshot])

    def _touch(self, aggregate: Aggregate) -> None:
        if aggregate.id not in self._touched:
            self._versions_before[aggregate.id] = aggregate.version - len(
                aggregate.pending_events)
            self._touched[aggregate.id] = aggregate

    # ------------------------------------------------------------------ idempotency

    def prefetch_keys(self, keys: list[str]) -> None:
        """Look up many idempotency keys at once (the feed runner calls it per chunk)."""
        missing = [key for key in keys if key not in self._keys]
        if missing:
            found = self.index.seen_commands(missing)
            for key in missing:
                self._keys[key] = found.get(key, "")

    def _prior(self, key: str) -> str:
        if key not in self._keys:
            self._keys[key] = self.index.seen_commands([key]).get(key, "")
        return self._keys[key]

    def _repeat(self, key: str, command: c.Command) -> tuple[bool, str]:
        """Return (is an identical repeat, content hash); raise `id_conflict` otherwise."""
        digest = content_hash(command.content())
        prior = self._prior(key)
        if not prior:
            return False, digest
        if prior == digest:
            return True, digest
        raise IdConflictError(f"id {key.split('|')[-1]!r} was used by a different command")

    def _remember(self, key: str, digest: str, at: datetime) -> None:
        self._keys[key] = digest
        self._side.commands.append((key, digest, to_micros(at)))

    # ------------------------------------------------------------------ loading

    def _stream_names(self, kind: str) -> set[str]:
        if kind not in self._known_streams:
            self._known_streams[kind] = {name for _, name in self.index.streams(kind)}
        return self._known_streams[kind]

    def _register_stream(self, kind: str, aggregate_id: UUID, name: str) -> None:
        self._stream_names(kind).add(name)
        self._side.streams.append((aggregate_id.hex, kind, name))

    def account_names(self) -> list[str]:
        return sorted(self._stream_names("account"))

    def find_account(self, name: str) -> Account | None:
        aggregate_id = account_id(name)
        account = self._accounts.get(aggregate_id)
        if account is not None:
            return account
        if name not in self._stream_names("account"):
            return None
        try:
            account = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(account, Account)
        self._accounts[aggregate_id] = account
        return account

    def _account(self, name: str) -> Account:
        account = self.find_account(name)
        if account is None:
            raise UnknownAccountError(name)
        return account

    def _load_reference(self, aggregate_id: UUID, kind: str, name: str) -> Reference | None:
        if aggregate_id in self._refs:
            return self._refs[aggregate_id]
        if aggregate_id in self._loaded_refs:
            return None
        self._loaded_refs.add(aggregate_id)
        if name not in self._stream_names(kind):
            return None
        events = list(self.events.get(aggregate_id))
        if not events:
            return None
        aggregate: Reference | None = None
        history = self._history(kind, name)
        for event in events:
            aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
            history.observe(event)
        assert aggregate is not None
        self._refs[aggregate_id] = aggregate
        return aggregate

    def _history(self, kind: str, name: str) -> Any:
        if kind == "asset":
            return self.reference.assets.setdefault(name, AssetHistory())
        if kind == "instrument":
            return self.reference.instruments.setdefault(name, InstrumentHistory())
        return self.reference.settings

    def _asset(self, name: str) -> Asset | None:
        found = self._load_reference(asset_id(name), "asset", name)
        return found if isinstance(found, Asset) else None

    def _instrument(self, symbol: str) -> Instrument | None:
        found = self._load_reference(instrument_id(symbol), "instrument", symbol)
        return found if isinstance(found, Instrument) else None

    def _settings(self) -> Settings | None:
        found = self._load_reference(portfolio_settings_id(), "settings", "portfolio_margin")
        return found if isinstance(found, Settings) else None

    def _record_reference(self, aggregate: Reference, kind: str, name: str) -> None:
        """Feed the new events of a reference aggregate into its series, then mark it dirty."""
        history = self._history(kind, name)
        for event in aggregate.pending_events[-1:]:
            history.observe(event)
        self._refs[aggregate.id] = aggregate
        self._touch(aggregate)

    def require_asset(self, name: str) -> AssetTerms:
        self._asset(name)
        history = self.reference.assets.get(name)
        if history is None or not history.terms:
            raise UnknownAssetError(name)
        terms = history.terms.values[-1]
        return terms

    def require_instrument(self, symbol: str) -> InstrumentTerms:
        self._instrument(symbol)
        history = self.reference.instruments.get(symbol)
        if history is None or not history.terms:
            raise UnknownSymbolError(symbol)
        return history.terms.values[-1]

    def market_for(self, account: Account, at: datetime,
                   extra_assets: tuple[str, ...] = ()) -> rules.Market:
        """Return the prices and parameters in force at `at` for what the account holds."""
        symbols = {p["symbol"] for p in account.positions.values()} | set(account.orders)
        assets = set(account.balances) | set(account.spot_in_use) | set(extra_assets)
        for symbol in symbols:
            self._instrument(symbol)
        for asset in assets:
            self._asset(asset)
        for symbol in symbols:
            terms = self.reference.instrument_terms(symbol, at)
            if terms is not None:
                self._asset(terms.settle)
                self._asset(terms.base)
        self._settings()
        return self.reference.market(at, assets, symbols)

    # ------------------------------------------------------------------ reference data

    def asset(self, cmd: c.AssetCmd) -> str:
        terms = AssetTerms(
            asset=cmd.asset,
            precision=cmd.precision,
            collateral_tiers=tuple(CollateralTier(t.up_to, t.ratio)
                                   for t in cmd.collateral_tiers or ()),
            tier_basis=TierBasis(cmd.tier_basis),
            interest=None if cmd.interest is None else InterestTerms(
                cmd.interest.annual_rate, cmd.interest.free_amount,
                FreeMode(cmd.interest.free_mode)),
            auto_exchange_threshold_usd=cmd.auto_exchange_threshold_usd,
            auto_exchange_discount=cmd.auto_exchange_discount,
            borrow_mmr_rate=cmd.borrow_mmr_rate,
            borrow_imr_rate=cmd.borrow_imr_rate,
        )
        existing = self._asset(cmd.asset)
        if existing is None:
            aggregate = Asset.list(asset_id(cmd.asset), cmd.at, cmd.asset, asset_to_dict(terms))
            self._register_stream("asset", aggregate.id, cmd.asset)
        else:
            existing.require_not_before(cmd.at)
            existing.configure(cmd.at, asset_to_dict(terms))
            aggregate = existing
        self._record_reference(aggregate, "asset", cmd.asset)
        return APPLIED

    def instrument(self, cmd: c.InstrumentCmd) -> str:
        tiers = tuple(RiskTier(t.up_to, t.mmr, t.max_leverage) for t in cmd.risk_tiers)
        deductions = derived_deductions(tiers)
        for given, derived in zip(cmd.risk_tiers, deductions, strict=True):
            if given.deduction is not None and given.deduction != derived:
                raise InvalidInputError(
                    f"tier deduction {to_str(given.deduction)} differs from the derived "
                    f"{to_str(derived)}")
        tiers = tuple(RiskTier(t.up_to, t.mmr, t.max_leverage, d)
                      for t, d in zip(tiers, deductions, strict=True))
        self.require_asset(cmd.settle)
        self.require_asset(cmd.base)
        kind = Kind(cmd.kind)
        if kind is Kind.INVERSE_PERPETUAL and cmd.settle != cmd.base:
            raise InvalidInputError("an inverse perpetual settles in its base coin")
        existing = self._instrument(cmd.symbol)
        previous = (self.reference.instruments[cmd.symbol].terms.values[-1]
                    if existing is not None else None)
        if kind is Kind.LINEAR_FUTURE:
            assert cmd.expiry is not None
            if previous is None and cmd.expiry <= cmd.at:
                raise InvalidInputError(f"{cmd.symbol}: expiry {format_at(cmd.expiry)} is not "
                                        "after the listing time")
            if previous is not None and previous.expiry != cmd.expiry:
                raise InvalidInputError(f"{cmd.symbol}: a future's expiry may not change")
        if previous is not None and previous.kind is not kind:
            raise InvalidInputError(f"{cmd.symbol}: an instrument's kind may not change")
        terms = InstrumentTerms(
            symbol=cmd.symbol, kind=kind, base=cmd.base, settle=cmd.settle,
            contract_size=cmd.contract_size, risk_tiers=tiers, mm_basis=MmBasis(cmd.mm_basis),
            taker_fee_rate=cmd.taker_fee_rate, maker_fee_rate=cmd.maker_fee_rate,
            close_fee_in_mm=cmd.close_fee_in_mm, session_settlement=cmd.session_settlement,
            funding_interval_hours=cmd.funding_interval_hours or 8,
            auto_add_amount=AutoAddAmount(cmd.auto_add_amount), expiry=cmd.expiry,
            delivery_fee_rate=cmd.delivery_fee_rate or ZERO,
        )
        if existing is None:
            aggregate = Instrument.list(instrument_id(cmd.symbol), cmd.at, cmd.symbol,
                                        instrument_to_dict(terms))
            self._register_stream("instrument", aggregate.id, cmd.symbol)
        else:
            existing.require_not_before(cmd.at)
            existing.configure(cmd.at, instrument_to_dict(terms))
            aggregate = existing
        self._record_reference(aggregate, "instrument", cmd.symbol)
        return APPLIED

    def _existing_instrument(self, symbol: str) -> Instrument:
        self.require_instrument(symbol)
        instrument = self._instrument(symbol)
        assert instrument is not None
        return instrument

    def mark_price(self, cmd: c.MarkPriceCmd) -> str:
        instrument = self._existing_instrument(cmd.symbol)
        instrument.require_not_before(cmd.at)
        instrument.set_mark_price(cmd.at, cmd.price)
        self._record_reference(instrument, "instrument", cmd.symbol)
        return APPLIED

    def funding_rate(self, cmd: c.FundingRateCmd) -> str:
        terms = self.require_instrument(cmd.symbol)
        if not terms.has_funding:
            raise InvalidInputError(f"{cmd.symbol} is a future: it has no funding rate")
        instrument = self._existing_instrument(cmd.symbol)
        instrument.require_not_before(cmd.at)
        instrument.set_funding_rate(cmd.at, cmd.rate)
        self._record_reference(instrument, "instrument", cmd.symbol)
        return APPLIED

    def index_price(self, cmd: c.IndexPriceCmd) -> str:
        self.require_asset(cmd.asset)
        asset = self._asset(cmd.asset)
        assert asset is not None
        asset.require_not_before(cmd.at)
        asset.set_index_price(cmd.at, cmd.price)
        self._record_reference(asset, "asset", cmd.asset)
        return APPLIED

    def risk_unit(self, cmd: c.RiskUnitCmd) -> str:
        self.require_asset(cmd.asset)
        defaults = RiskUnitTerms(cmd.asset)
        terms = RiskUnitTerms(
            asset=cmd.asset,
            price_shocks=tuple(cmd.price_shocks) if cmd.price_shocks else defaults.price_shocks,
            extreme_shocks=(tuple(cmd.extreme_shocks) if cmd.extreme_shocks
                            else defaults.extreme_shocks),
            extreme_factor=_or(cmd.extreme_factor, defaults.extreme_factor),
            basis_rate=_or(cmd.basis_rate, defaults.basis_rate),
            basis_annual_rate=_or(cmd.basis_annual_rate, defaults.basis_annual_rate),
            spot_basis_rate=_or(cmd.spot_basis_rate, defaults.spot_basis_rate),
            min_charge_rate=_or(cmd.min_charge_rate, defaults.min_charge_rate),
            min_charge_tiers=(tuple(MultiplierTier(t.up_to, t.multiplier)
                                    for t in cmd.min_charge_tiers)
                              if cmd.min_charge_tiers else defaults.min_charge_tiers),
            depeg_bands=(tuple(RateBand(b.up_to, b.rate) for b in cmd.depeg_bands)
                         if cmd.depeg_bands else defaults.depeg_bands),
        )
        asset = self._asset(cmd.asset)
        assert asset is not None
        asset.require_not_before(cmd.at)
        asset.configure_risk_unit(cmd.at, risk_unit_to_dict(terms))
        self._record_reference(asset, "asset", cmd.asset)
        return APPLIED

    def portfolio_margin(self, cmd: c.PortfolioMarginCmd) -> str:
        terms = PortfolioTerms(cmd.min_equity_usd, cmd.imr_factor, cmd.liquidation_level,
                               cmd.target_level)
        existing = self._settings()
        if existing is None:
            aggregate = Settings.list(portfolio_settings_id(), cmd.at, portfolio_to_dict(terms))
            self._register_stream("settings", aggregate.id, "portfolio_margin")
        else:
            existing.require_not_before(cmd.at)
            existing.configure(cmd.at, portfolio_to_dict(terms))
            aggregate = existing
        self._record_reference(aggregate, "settings", "portfolio_margin")
        return APPLIED

    # ------------------------------------------------------------------ accounts

    def open_account(self, cmd: c.OpenAccountCmd) -> str:
        existing = self.find_account(cmd.account)
        if existing is not None:
            if existing.mode == cmd.mode:
                return ACKNOWLEDGED
            raise AccountExistsError(f"{cmd.account} exists in mode {existing.mode}")
        if cmd.mode == Mode.PORTFOLIO.value:
            raise InsufficientEquityError(
                "an account cannot be opened in portfolio mode: it has no equity yet; open "
                "it in another mode and change_mode once it holds the minimum")
        account = Account.open(account_id(cmd.account), cmd.at, cmd.account, Mode(cmd.mode))
        self._accounts[account.id] = account
        self._register_stream("account", account.id, cmd.account)
        self._touch(account)
        return APPLIED

    def figures(self, account: Account, at: datetime, *, limits: bool = False,
                extra_assets: tuple[str, ...] = ()) -> rules.AccountFigures:
        market = self.market_for(account, at, extra_assets)
        return rules.evaluate(account.snapshot(), market, limits=limits)

    def change_mode(self, cmd: c.ChangeModeCmd) -> str:
        account = self._account(cmd.account)
        account.require_not_before(cmd.at)
        if account.mode == cmd.mode:
            return ACKNOWLEDGED
        figures = self.figures(account, cmd.at)
        has_debt = any(debt > ZERO for debt in figures.debts.values())
        mode = Mode(cmd.mode)
        if mode is Mode.PORTFOLIO and not (account.has_positions() or account.has_open_orders()
                                           or has_debt):
            minimum = self.reference.portfolio_terms(cmd.at).min_equity_usd
            pooled = rules.evaluate(
                rules.AccountSnapshot(Mode.MULTI_ASSET, dict(account.balances)),
                self.market_for(account, cmd.at), limits=False)
            effective = pooled.margin.effective_equity_usd
            if effective < minimum:
                raise InsufficientEquityError(
                    f"{cmd.account}: effective equity {to_str(effective)} USD < "
                    f"{to_str(minimum)} USD needed for portfolio mode")
        account.change_mode(cmd.at, mode, has_debt)
        self._touch(account)
        return APPLIED

    def _check_places(self, amount: Decimal, terms: AssetTerms) -> None:
        if significant_places(amount) > terms.precision:
            raise InvalidInputError(
                f"{to_str(amount)} has more decimal places than {terms.asset}'s precision "
                f"({terms.precision})")

    def deposit(self, cmd: c.DepositCmd) -> str:
        key = c.idempotency_key(cmd) or ""
        repeat, digest = self._repeat(key, cmd)
        if repeat:
            return ACKNOWLEDGED
        account = self._account(cmd.account)
        terms = self.require_asset(cmd.asset)
        self._check_places(cmd.amount, terms)
        account.require_not_before(cmd.at)
        account.deposit(cmd.at, cmd.id, cmd.asset, cmd.amount)
        self._touch(account)
        self._remember(key, digest, cmd.at)
        return APPLIED

    def withdraw(self, cmd: c.WithdrawCmd) -> str:
        key = c.idempotency_key(cmd) or ""
        repeat, digest = self._repeat(key, cmd)
        if repeat:
            return ACKNOWLEDGED
        account = self._account(cmd.account)
        terms = self.require_asset(cmd.asset)
        self._check_places(cmd.amount, terms)
        account.require_not_before(cmd.at)
        market = self.market_for(account, cmd.at, (cmd.asset,))
        account.withdraw(cmd.at, cmd.id, cmd.asset, cmd.amount, market)
        self._touch(account)
        self._remember(key, digest, cmd.at)
        return APPLIED

    def transfer(self, cmd: c.TransferCmd) -> str:
        key = c.idempotency_key(cmd) or ""
        repeat, digest = self._repeat(key, cmd)
        if repeat:
            return ACKNOWLEDGED
        source = self._account(cmd.from_)
        target = self._account(cmd.to)
        terms = self.require_asset(cmd.asset)
        self._check_places(cmd.amount, terms)
        source.require_not_before(cmd.at)
        target.require_not_before(cmd.at)
        market = self.market_for(source, cmd.at, (cmd.asset,))
        postings = source.transfer_out(cmd.at, cmd.id, cmd.to, cmd.asset, cmd.amount, market)
        target.transfer_in(cmd.at, cmd.id, cmd.from_, cmd.asset, cmd.amount, postings)
        self._touch(source)
        self._touch(target)
        self._remember(key, digest, cmd.at)
        return APPLIED

    # ------------------------------------------------------------------ trading

    def _require_tradable(self, terms: InstrumentTerms, at: datetime) -> None:
        """Refuse fills and orders on a future at or after its expiry, or delivered."""
        if terms.expiry is not None and at >= terms.expiry:
            raise InvalidInputError(
                f"{terms.symbol} expired at {format_at(terms.expiry)}: no more trading")
        history = self.reference.instruments.get(terms.symbol)
        if history is not None and history.delivered:
            raise InvalidInputError(f"{terms.symbol} has been delivered")

    def fill(self, cmd: c.FillCmd) -> str:
        key = c.idempotency_key(cmd) or ""
        repeat, digest = self._repeat(key, cmd)
        if repeat:
            return ACKNOWLEDGED
        account = self._account(cmd.account)
        terms = self.require_instrument(cmd.symbol)
        settle = self.require_asset(terms.settle)
        self._require_tradable(terms, cmd.at)
        if cmd.fee is not None:
            self._check_places(abs(cmd.fee), settle)
        account.require_not_before(cmd.at)
        self._require_mode_allows(account, terms, cmd.margin_type, cmd.at)
        account.fill(
            at=cmd.at, command_id=cmd.id, terms=terms, side=cmd.side, qty=cmd.qty,
            price=cmd.price, liquidity=cmd.liquidity, fee=cmd.fee,
            margin_type=cmd.margin_type, leverage=cmd.leverage, liquidation=cmd.liquidation,
            precision=settle.precision,
        )
        self._touch(account)
        self._note_holder(cmd.symbol, account)
        self._remember(key, digest, cmd.at)
        return APPLIED

    def _require_mode_allows(
        self, account: Account, terms: InstrumentTerms, margin_type: str, at: datetime
    ) -> None:
        mode = Mode(account.mode)
        if mode is Mode.MULTI_ASSET:
            if margin_type == ISOLATED:
                raise NotAllowedInModeError("multi_asset mode is cross only")
            if terms.settle not in STABLECOINS:
                raise NotAllowedInModeError(
                    f"multi_asset mode trades USDT- and USDC-settled contracts only, "
                    f"not {terms.symbol}")
        elif mode is Mode.PORTFOLIO:
            if margin_type == ISOLATED:
                raise NotAllowedInModeError("portfolio mode is cross only")
            if self.reference.risk_unit(terms.base, at) is None:
                raise NotAllowedInModeError(f"{terms.base} has no risk_unit parameters")
            if self.reference.index_price(terms.base, at) is None:
                raise NoPriceError(f"{terms.base} has no index price")
        if self.reference.index_price(terms.settle, at) is None:
            raise NoPriceError(f"{terms.settle} has no index price")

    def _note_holder(self, symbol: str, account: Account) -> None:
        holders = self._holders.get(symbol)
        if holders is None:
            holders = self._holders[symbol] = set(self.index.holders(symbol))
        if account.id.hex not in holders:
            holders.add(account.id.hex)
            self._side.holders.append((symbol, account.id.hex))

    def holders(self, symbol: str) -> set[str]:
        if symbol not in self._holders:
            self._holders[symbol] = set(self.index.holders(symbol))
        return self._holders[symbol]

    def open_orders(self, cmd: c.OpenOrdersCmd) -> str:
        account = self._account(cmd.account)
        terms = self.require_instrument(cmd.symbol)
        if cmd.buy or cmd.sell:
            self._require_tradable(terms, cmd.at)
        account.require_not_before(cmd.at)
        buy = (cmd.buy.qty, cmd.buy.price) if cmd.buy else None
        sell = (cmd.sell.qty, cmd.sell.price) if cmd.sell else None
        account.set_open_orders(cmd.at, cmd.symbol, buy, sell)
        self._touch(account)
        return APPLIED

    def set_leverage(self, cmd: c.SetLeverageCmd) -> str:
        account = self._account(cmd.account)
        terms = self.require_instrument(cmd.symbol)
        account.require_not_before(cmd.at)
        before = account.version
        account.set_leverage(cmd.at, terms, cmd.leverage)
        if account.version != before:
            self._touch(account)
        return APPLIED

    # ------------------------------------------------------------------ periodic

    def settle_funding(self, cmd: c.SettleFundingCmd) -> str:
        """Settle funding, then USDC session PnL, of every instrument whose funding time is
        `at` (DESIGN §6.6, §6.7). Idempotent by `at`: each instrument records the period."""
        due: list[InstrumentTerms] = []
        for symbol in sorted(self._stream_names("instrument")):
            self._instrument(symbol)
            terms = self.reference.instrument_terms(symbol, cmd.at)
            if terms is None or not terms.has_funding:
                continue
            if is_funding_time(cmd.at, terms.funding_interval_hours):
                due.append(terms)
        if not due and not any(
            is_funding_time(cmd.at, t.funding_interval_hours)
            for t in (self.reference.instrument_terms(s, cmd.at)
                      for s in self._stream_names("instrument")) if t is not None
        ):
            raise InvalidInputError(f"{format_at(cmd.at)} is no funding time of any instrument")
        for terms in due:
            self._settle_instrument_funding(terms, cmd.at)
        return APPLIED

    def _settle_instrument_funding(self, terms: InstrumentTerms, period: datetime) -> None:
        instrument = self._existing_instrument(terms.symbol)
        history = self.reference.instruments[terms.symbol]
        if period in history.periods:
            return
        mark = self.reference.mark_price(terms.symbol, period)
        previous = _previous_funding_time(period, terms.funding_interval_hours)
        rate = history.rate_for(period, previous)
        paid = False
        holders = self._holders_at(terms.symbol, period)
        for account, positions in holders:
            settle = self.require_asset(terms.settle)
            for margin_type, qty in positions:
                if rate is not None and mark is not None and rate != ZERO:
                    before = account.version
                    account.settle_funding(period=period, terms=terms, margin_type=margin_type,
                                           qty=qty, mark=mark, rate=rate,
                                           precision=settle.precision)
                    if account.version != before:
                        paid = True
                        self._touch(account)
            if terms.session_settlement and mark is not None:
                for margin_type, _ in positions:
                    before = account.version
                    account.settle_session(period=period, terms=terms, margin_type=margin_type,
                                           mark=mark, precision=settle.precision)
                    if account.version != before:
                        self._touch(account)
        instrument.record_funding_period(period, rate, mark, paid)
        self._record_reference(instrument, "instrument", terms.symbol)

    def _holders_at(
        self, symbol: str, at: datetime
    ) -> list[tuple[Account, list[tuple[str, Decimal]]]]:
        """Return the accounts holding `symbol` at `at`, with (margin type, qty) of each
        position, read from the account as of `at` when it has moved on since."""
        found = []
        names = {sid: name for sid, name in self.index.streams("account")}
        for name in self._stream_names("account"):
            names.setdefault(account_id(name).hex, name)
        for stream in sorted(self.holders(symbol)):
            name = names.get(stream)
            if name is None:
                continue
            account = self._account(name)
            state = account if account.last_at <= at else self.account_at(name, at)
            if state is None:
                continue
            positions = [
                (margin_type, held["qty"])
                for margin_type in (CROSS, ISOLATED)
                if (held := state.position(symbol, margin_type)) is not None
            ]
            if positions:
                found.append((account, positions))
        return found

    # ------------------------------------------------------------------ interest

    def interest_view(self, account: Account, at: datetime) -> dict[str, dict[str, Decimal]]:
        """Return {asset: {accrued, charged}} for the state's `interest` map (issue 4)."""
        return {
            asset: {"accrued": ZERO, "charged": charged}
            for asset, charged in account.interest_charged.items()
        }

    # ------------------------------------------------------------------ history

    def account_at(self, name: str, at: datetime | None) -> Account | None:
        """Return the account as it was after its last event with `at ≤ at` (None: not yet)."""
        aggregate_id = account_id(name)
        if name not in self._stream_names("account"):
            return None
        if at is None:
            return self.find_account(name)
        cached = self._accounts.get(aggregate_id)
        if cached is not None and cached.last_at <= at:
            return cached
        if self._touched:
            self.flush()  # the time index must hold every event before reading it
        version = self.index.version_at(aggregate_id.hex, to_micros(at))
        if version is None:
            return None
        account = self.repository.get(aggregate_id, version=version)
        assert isinstance(account, Account)
        return account


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def _previous_funding_time(at: datetime, hours: int) -> datetime:
    return at - timedelta(hours=hours)
