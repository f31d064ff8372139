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

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    OperationalError,
    Transcoding,
)

from ledger.application import commands as c
from ledger.application.reference import AssetHistory, InstrumentHistory, ReferenceData
from ledger.application.store import IndexQueries, SideRows, environment, sqlite_path
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
    ConcurrentWriteError,
    IdConflictError,
    InsufficientEquityError,
    InvalidInputError,
    LedgerError,
    NoPriceError,
    NotAllowedInModeError,
    StoreUnavailableError,
    UnknownAccountError,
    UnknownAssetError,
    UnknownSymbolError,
)
from ledger.numbers import ZERO, significant_places, to_str
from ledger.rules import margin as rules
from ledger.rules.exchange import auto_exchange_shares
from ledger.rules.funding import is_funding_time
from ledger.rules.interest import accrued_over, coin_equity, liability
from ledger.rules.liquidation import is_at_liquidation, isolated_liquidation_price
from ledger.rules.liquidation_plan import liquidation_plan
from ledger.rules.maintenance import derived_deductions
from ledger.rules.positions import unrealized_pnl
from ledger.rules.ratios import is_at_call_level
from ledger.rules.terms import (
    MARGIN_CALL_LEVEL,
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
from ledger.times import format_at, from_micros, to_micros

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
        if not (url.startswith("sqlite:") and sqlite_path(url) == ":memory:"):
            # Alembic owns every table (DESIGN §8): bring the store to the current schema on
            # first use (one query of alembic_version when it is current; alembic is
            # imported only when it is behind). A memory store keeps the library's creation:
            # a migration on another connection cannot see it.
            from ledger.application import schema

            if not schema.is_current(url):
                schema.upgrade(url)
            merged["CREATE_TABLE"] = "n"
        if env:
            merged.update(env)
        super().__init__(env=merged)
        self.index: IndexQueries = self.recorder  # type: ignore[assignment]
        if self.snapshots is not None:
            # Snapshots are written in the events' transaction (one command, one unit).
            self.recorder.snapshots_table = (  # type: ignore[attr-defined]
                self.snapshots.recorder.events_table_name)  # type: ignore[attr-defined]
        self._accounts: dict[UUID, Account] = {}
        self._refs: dict[UUID, Reference] = {}
        self._loaded_refs: set[UUID] = set()
        self._looked_up: set[tuple[str, str]] = set()  # (kind, name) of streams asked for
        self.reference = ReferenceData(self._load_stream)
        self._known_streams: dict[str, set[str]] = {}
        self._holders: dict[str, set[str]] = {}
        self._touched: dict[UUID, Aggregate] = {}
        # Pending events of each touched aggregate as the last finished command left them
        # (the savepoint of the running command), and what the running command touched.
        self._done: dict[UUID, int] = {}
        self._touched_now: dict[UUID, Aggregate] = {}
        self._snapshot_versions: dict[UUID, int] = {}
        self._snapshots_due: list[Any] = []
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
            "set_auto_add_margin": self.set_auto_add_margin,
            "adjust_isolated_margin": self.adjust_isolated_margin,
            "check_margin": self.check_margin,
            "charge_interest": self.charge_interest,
            "repay": self.repay,
            "set_spot_in_use": self.set_spot_in_use,
            "settle_delivery": self.settle_delivery,
        }
        self._copies: dict[UUID, tuple[int, Account]] = {}  # state at the last checkpoint
        self._sweep_times: list[int] | None = None
        self._sweep_memory: dict[UUID, tuple[int, SweepFlags]] = {}
        self.swept_skipped = 0  # accounts the last sweep left alone: their history is later
        self._log_position = self.recorder.max_notification_id() or 0

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
        """Apply one command; return "applied" or "acknowledged" (a repeat).

        A command is one unit: inside a batch, its events and index rows join the batch's
        transaction; if it fails after it has changed anything (a rejection found late, an
        internal error, the store lost), the commands before it are written as they were and
        nothing of it (`_abandon`). Nothing inside a command writes to the store."""
        handler = self.handlers.get(command.type)
        if handler is None:
            raise InvalidInputError(f"command type {command.type!r} is not supported yet")
        try:
            # Idempotency before anything reads the store (DESIGN 6.11 check order): money
            # commands by (type, account, id), periodic ones by `at`, the rest by content.
            digest = content_hash(command.content())
            key = c.idempotency_key(command) or c.repeat_key(command, digest)
            prior = self._prior(key)
        except Exception as error:
            _raise_store_error(error)
            raise
        if prior:
            if prior == digest or isinstance(command, c.PeriodicCmd):
                return ACKNOWLEDGED
            identifier = getattr(command, "id", "")
            raise IdConflictError(f"id {identifier!r} was used by a different command")
        mark = self._savepoint()
        self._touched_now = {}
        try:
            outcome = handler(command)
        except LedgerError:
            if self._changed_since(mark):
                self._abandon(mark)  # refused after a change: it must leave nothing
            raise
        except BaseException as error:
            self._abandon(mark)
            _raise_store_error(error)
            raise
        for aggregate_id, aggregate in self._touched_now.items():
            self._done[aggregate_id] = len(aggregate.pending_events)
        if outcome == APPLIED:
            self._remember(key, digest, command.at)
        if self._depth == 0:
            self.flush()
        return outcome

    # ------------------------------------------------------------------ the unit of work

    def _savepoint(self) -> _Savepoint:
        """Remember how much of the working set the commands so far have produced."""
        side = self._side
        return _Savepoint(
            side=(len(side.commands), len(side.streams), len(side.holders),
                  len(side.checkpoints)),
            snapshots=len(self._snapshots_due),
        )

    def _changed_since(self, mark: _Savepoint) -> bool:
        """Tell whether the running command has changed any aggregate or index row."""
        side = self._side
        if (len(side.commands), len(side.streams), len(side.holders),
                len(side.checkpoints)) != mark.side or len(self._snapshots_due) != mark.snapshots:
            return True
        held: list[Aggregate] = [*self._accounts.values(), *self._refs.values()]
        return any(len(a.pending_events) != self._done.get(a.id, 0) for a in held)

    def _abandon(self, mark: _Savepoint) -> None:
        """Write what the commands before the running one produced, exactly as they left it,
        then forget the working set (the running command's changes go with it). If the store
        cannot take even that, nothing of the batch is written and the error goes up."""
        try:
            aggregates = [self._touched[aid] for aid in self._done if aid in self._touched]
            events = [event for a in aggregates for event in a.pending_events[:self._done[a.id]]]
            commands, streams, holders, checkpoints = mark.side
            side = SideRows(commands=self._side.commands[:commands],
                            streams=self._side.streams[:streams],
                            holders=self._side.holders[:holders],
                            checkpoints=self._side.checkpoints[:checkpoints])
            self._write(events, side, self._snapshots_due[:mark.snapshots])
        finally:
            self.discard()
        for listener in self.flush_listeners:
            listener()

    def flush(self) -> None:
        """Write every touched aggregate and the index rows in one transaction."""
        if not self._touched and not self._side:
            for listener in self.flush_listeners:
                listener()
            return
        # What Application.save does, less its per-object protocol checks (a measurable share
        # of a 100,000-event settlement): collect every pending event, put them in one go.
        events = [event for aggregate in self._touched.values()
                  for event in aggregate.pending_events]
        try:
            self._write(events, self._side, self._snapshots_due)
        except BaseException:
            self.discard()  # nothing was written: the working set is ahead of the store
            raise
        for aggregate in self._touched.values():
            aggregate.collect_events()
        self._snapshots_due = []
        self._touched = {}
        self._done = {}
        self._side = SideRows()
        for listener in self.flush_listeners:
            listener()

    def _write(self, events: list[Any], side: SideRows, snapshots: list[Any]) -> None:
        """Put events, their index rows and snapshots in one transaction (all or nothing)."""
        if not events and not side:
            return
        rows = SideRows(commands=side.commands, streams=side.streams, holders=side.holders,
                        checkpoints=side.checkpoints, snapshots=snapshots)
        for event in events:
            rows.events.append((event.originator_id.hex, event.originator_version,
                                to_micros(event.at), type(event).__name__))
        try:
            self.events.put(events, side=rows)
        except IntegrityError as error:
            # Another writer saved first (same version, or an idempotency key): this
            # ledger's view is stale. Callers discard and retry; nothing was written.
            raise ConcurrentWriteError(str(error)) from error
        except Exception as error:
            _raise_store_error(error)
            raise
        if events:
            latest = self.recorder.max_notification_id() or 0
            if latest == self._log_position + len(events):
                self._log_position = latest  # nobody else wrote: the working set is current

    def catch_up(self) -> int:
        """Bring the working set up to date with what other processes wrote, by reading the
        notification log after the last position this ledger knows (events it holds already
        are skipped by version, without decoding). Returns how many events were applied.

        A long-running process (the scheduler) calls it before each job instead of
        `discard()`, so it pays for what changed, not for reloading every account."""
        if self._touched:
            self.flush()
        latest = self.recorder.max_notification_id() or 0
        applied = 0
        start = self._log_position + 1
        while start <= latest:
            page = self.recorder.select_notifications(start, 1000, stop=latest)
            if not page:
                break
            for notification in page:
                applied += self._follow(notification)
            start = page[-1].id + 1
        if latest != self._log_position:
            # Index-backed caches may have grown elsewhere: read them again when needed.
            self._known_streams.clear()
            self._holders.clear()
            self._keys.clear()
            self._sweep_times = None
        self._log_position = latest
        return applied

    def _follow(self, notification: Any) -> int:
        aggregate_id = notification.originator_id
        held: Any = self._accounts.get(aggregate_id) or self._refs.get(aggregate_id)
        if held is None:
            self._loaded_refs.discard(aggregate_id)  # a new stream: load it when asked
            self._looked_up.clear()
            return 0
        if notification.originator_version <= held.version:
            return 0  # written by this ledger
        if notification.originator_version != held.version + 1:
            self._accounts.pop(aggregate_id, None)  # a gap: reload it when needed
            self._refs.pop(aggregate_id, None)
            self._loaded_refs.discard(aggregate_id)
            self._looked_up.clear()
            return 0
        event = cast(Any, self.mapper.to_domain_event(notification))
        event.mutate(held)
        if isinstance(held, Reference):
            kind = ("asset" if isinstance(held, Asset) else
                    "instrument" if isinstance(held, Instrument) else "settings")
            self._history(kind, held.name).observe(event)
        return 1

    def discard(self) -> None:
        """Forget everything not yet written (after an internal error)."""
        self._accounts.clear()
        self._refs.clear()
        self._loaded_refs.clear()
        self._looked_up.clear()
        self.reference = ReferenceData(self._load_stream)
        self._known_streams.clear()
        self._holders.clear()
        self._touched = {}
        self._done = {}
        self._touched_now = {}
        self._snapshot_versions.clear()
        self._snapshots_due = []
        self._side = SideRows()
        self._keys.clear()
        self._sweep_times = None
        self._sweep_memory.clear()
        self._copies.clear()
        self._log_position = self.recorder.max_notification_id() or 0

    def _touch(self, aggregate: Aggregate) -> None:
        if aggregate.id not in self._touched:
            self._touched[aggregate.id] = aggregate
        self._touched_now[aggregate.id] = aggregate
        if isinstance(aggregate, Account):
            self._snapshot_if_due(aggregate)

    def _snapshot_if_due(self, account: Account) -> None:
        """Encode a snapshot every SNAPSHOT_EVERY events, taken as soon as the account
        passes the mark (so a state query replays at most that many events); written
        right after the events of its batch."""
        last = self._snapshot_versions.setdefault(account.id, account.version - len(
            account.pending_events))
        if account.version // SNAPSHOT_EVERY > last // SNAPSHOT_EVERY and self.snapshots:
            snapshot = Account.Snapshot.take(account)
            # Encoded now: the snapshot shares the account's dicts, which keep changing.
            self._snapshots_due.append(self.snapshots.mapper.to_stored_event(snapshot))
            self._snapshot_versions[account.id] = account.version

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
            account = self.load_account(aggregate_id, None)
        except AggregateNotFoundError:
            return None
        self._accounts[aggregate_id] = account
        return account

    def load_accounts(self, names: list[str], chunk: int = 2000) -> None:
        """Bring many accounts into memory at once: their latest snapshots and the events
        after them in two queries per chunk (sweeps, funding and interest over every holder
        would otherwise pay two round trips per account)."""
        wanted = [name for name in names if account_id(name) not in self._accounts]
        events_table = self.recorder.events_table_name  # type: ignore[attr-defined]
        snapshots = self.snapshots.recorder if self.snapshots is not None else None
        for start in range(0, len(wanted), chunk):
            ids = [account_id(name) for name in wanted[start:start + chunk]]
            folded: dict[Any, Any] = dict.fromkeys(ids)
            after: dict[Any, int] = dict.fromkeys(ids, 0)
            if snapshots is not None:
                table = snapshots.events_table_name  # type: ignore[attr-defined]
                for stored in self.index.latest_snapshots(table, ids):
                    snapshot = self.mapper.to_domain_event(stored)
                    folded[stored.originator_id] = cast(Any, snapshot).mutate(None)
                    after[stored.originator_id] = stored.originator_version
            for stored in self.index.events_after(events_table, list(after.items())):
                event = cast(Any, self.mapper.to_domain_event(stored))
                folded[stored.originator_id] = event.mutate(folded[stored.originator_id])
            for aggregate_id, account in folded.items():
                if account is not None:
                    self._accounts[aggregate_id] = account

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

    def _load_stream(self, kind: str, name: str) -> None:
        """Bring a reference stream in the first time anything asks for it (the loader of
        `ReferenceData`): every lookup sees the store's history, not this process's past."""
        if (kind, name) in self._looked_up:
            return
        self._looked_up.add((kind, name))
        if kind == "asset":
            self._load_reference(asset_id(name), kind, name)
        elif kind == "instrument":
            self._load_reference(instrument_id(name), kind, name)
        else:
            self._load_reference(portfolio_settings_id(), kind, name)

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

    def require_asset(self, name: str, at: datetime | None = None) -> AssetTerms:
        """Return the asset's terms in force at `at` (default: the latest); `unknown_asset`
        when it has none then."""
        self._asset(name)
        history = self.reference.assets.get(name)
        terms = None
        if history is not None and history.terms:
            terms = history.terms.values[-1] if at is None else history.terms.at(at)
        if terms is None:
            raise UnknownAssetError(name)
        return terms

    def require_instrument(self, symbol: str, at: datetime | None = None) -> InstrumentTerms:
        """Return the instrument's terms in force at `at` (default: the latest);
        `unknown_symbol` when it is not listed then."""
        self._instrument(symbol)
        history = self.reference.instruments.get(symbol)
        terms = None
        if history is not None and history.terms:
            terms = history.terms.values[-1] if at is None else history.terms.at(at)
        if terms is None:
            raise UnknownSymbolError(symbol)
        return terms

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
        account = self._account(cmd.account)
        terms = self.require_asset(cmd.asset, cmd.at)
        self._check_places(cmd.amount, terms)
        account.require_not_before(cmd.at)
        account.deposit(cmd.at, cmd.id, cmd.asset, cmd.amount)
        self._touch(account)
        return APPLIED

    def withdraw(self, cmd: c.WithdrawCmd) -> str:
        account = self._account(cmd.account)
        terms = self.require_asset(cmd.asset, cmd.at)
        self._check_places(cmd.amount, terms)
        account.require_not_before(cmd.at)
        market = self.market_for(account, cmd.at, (cmd.asset,))
        account.withdraw(cmd.at, cmd.id, cmd.asset, cmd.amount, market)
        self._touch(account)
        return APPLIED

    def transfer(self, cmd: c.TransferCmd) -> str:
        source = self._account(cmd.from_)
        target = self._account(cmd.to)
        terms = self.require_asset(cmd.asset, cmd.at)
        self._check_places(cmd.amount, terms)
        source.require_not_before(cmd.at)
        target.require_not_before(cmd.at)
        market = self.market_for(source, cmd.at, (cmd.asset,))
        postings = source.transfer_out(cmd.at, cmd.id, cmd.to, cmd.asset, cmd.amount, market)
        target.transfer_in(cmd.at, cmd.id, cmd.from_, cmd.asset, cmd.amount, postings)
        self._touch(source)
        self._touch(target)
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
        account = self._account(cmd.account)
        terms = self.require_instrument(cmd.symbol, cmd.at)
        settle = self.require_asset(terms.settle, cmd.at)
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
        if cmd.liquidation:
            self._cover_liquidation_shortfall(account, terms, cmd.at)
        self._touch(account)
        self._note_holder(cmd.symbol, account)
        return APPLIED

    def _cover_liquidation_shortfall(
        self, account: Account, terms: InstrumentTerms, at: datetime
    ) -> None:
        """After a liquidation fill, cover negative equity from `system:insurance` so that no
        account is left below zero by a liquidation (issue 3, scope 4)."""
        market = self.market_for(account, at)
        figures = rules.evaluate(account.snapshot(), market, limits=False)
        settle = self.require_asset(terms.settle)
        if Mode(account.mode) is Mode.SINGLE_ASSET:
            shortfall = -figures.collateral[terms.settle].equity
        else:
            index = market.index(terms.settle)
            if not index:
                return
            shortfall = -figures.margin.equity_usd / index
        if shortfall > ZERO:
            account.cover_shortfall(at, terms.settle, shortfall, settle.precision)

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
        terms = self.require_instrument(cmd.symbol, cmd.at)
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
        terms = self.require_instrument(cmd.symbol, cmd.at)
        account.require_not_before(cmd.at)
        before = account.version
        account.set_leverage(cmd.at, terms, cmd.leverage)
        if account.version != before:
            self._touch(account)
        return APPLIED

    # ------------------------------------------------------------------ isolated margin

    def set_auto_add_margin(self, cmd: c.SetAutoAddMarginCmd) -> str:
        account = self._account(cmd.account)
        self.require_instrument(cmd.symbol)
        account.require_not_before(cmd.at)
        account.set_auto_add_margin(cmd.at, cmd.symbol, cmd.enabled)
        self._touch(account)
        return APPLIED

    def adjust_isolated_margin(self, cmd: c.AdjustIsolatedMarginCmd) -> str:
        account = self._account(cmd.account)
        terms = self.require_instrument(cmd.symbol, cmd.at)
        settle = self.require_asset(terms.settle, cmd.at)
        self._check_places(abs(cmd.amount), settle)
        account.require_not_before(cmd.at)
        if self.reference.index_price(terms.settle, cmd.at) is None:
            raise NoPriceError(f"{terms.settle} has no index price")
        market = self.market_for(account, cmd.at)
        account.adjust_isolated_margin(at=cmd.at, command_id=cmd.id, terms=terms,
                                       amount=cmd.amount, market=market)
        self._touch(account)
        return APPLIED

    # ------------------------------------------------------------------ portfolio margin

    def set_spot_in_use(self, cmd: c.SetSpotInUseCmd) -> str:
        account = self._account(cmd.account)
        self.require_asset(cmd.asset)
        account.require_not_before(cmd.at)
        if account.mode != Mode.PORTFOLIO.value:
            raise NotAllowedInModeError(f"{cmd.account} is not in portfolio mode")
        if self.reference.risk_unit(cmd.asset, cmd.at) is None:
            raise NotAllowedInModeError(f"{cmd.asset} has no risk_unit parameters")
        account.set_spot_in_use(cmd.at, cmd.asset, cmd.amount)
        self._touch(account)
        return APPLIED

    def settle_delivery(self, cmd: c.SettleDeliveryCmd) -> str:
        """Deliver every linear future whose expiry ≤ `at` and that is not delivered yet, at
        the mark in force at its expiry (PORTFOLIO-MARGIN §10.11). Idempotent."""
        due: list[tuple[InstrumentTerms, Decimal]] = []
        for symbol in sorted(self._stream_names("instrument")):
            self._instrument(symbol)
            history = self.reference.instruments[symbol]
            terms = history.terms.values[-1] if history.terms else None
            if terms is None or terms.expiry is None or terms.expiry > cmd.at:
                continue
            if history.delivered:
                continue
            price = history.marks.at(terms.expiry)
            if price is None:
                raise NoPriceError(f"{symbol} has no mark at or before its expiry "
                                   f"{format_at(terms.expiry)}")
            due.append((terms, price))
        for terms, price in due:
            settle = self.require_asset(terms.settle)
            for account, _ in self._holders_at(terms.symbol, cmd.at):
                before = account.version
                account.deliver(period=cmd.at, terms=terms, price=price,
                                precision=settle.precision)
                if account.version != before:
                    self._touch(account)
            instrument = self._existing_instrument(terms.symbol)
            instrument.deliver(cmd.at, price)
            self._record_reference(instrument, "instrument", terms.symbol)
        return APPLIED

    # ------------------------------------------------------------------ the margin sweep

    def check_margin(self, cmd: c.CheckMarginCmd) -> str:
        """Run the margin sweep at `at`: automatic top-ups, auto-exchange, margin calls,
        liquidation triggers, in that order (contract, DESIGN 6.11). Idempotent by `at`.

        A signal is about the present: the sweep acts only on accounts whose history ends at
        or before `at`; an account that has moved past it is skipped (counted in
        `swept_skipped`, no event)."""
        previous = self._previous_sweep(cmd.at)
        self.load_accounts(self.account_names())
        self.swept_skipped = 0
        for name in self.account_names():
            account = self.find_account(name)
            if account is None:
                continue
            if account.last_at > cmd.at:
                self.swept_skipped += 1
                continue
            self._sweep_account(account, cmd.at, previous)
        self._add_sweep_time(cmd.at)
        return APPLIED

    def _opened_after(self, account: Account, at: datetime) -> bool:
        return account.version == 1 and account.last_at > at

    def _sweep_times_list(self) -> list[int]:
        if self._sweep_times is None:
            self._sweep_times = sorted(self.index.command_times("check_margin|@"))
        return self._sweep_times

    def _previous_sweep(self, at: datetime) -> int | None:
        times = self._sweep_times_list()
        index = bisect_left(times, to_micros(at))
        return times[index - 1] if index else None

    def _add_sweep_time(self, at: datetime) -> None:
        insort(self._sweep_times_list(), to_micros(at))

    def _sweep_account(self, account: Account, at: datetime, previous: int | None) -> None:
        if not account.positions and not account.orders and all(
                balance >= ZERO for balance in account.balances.values()):
            # Nothing to top up, exchange, call or liquidate: no requirement, no debt.
            self._sweep_memory[account.id] = (to_micros(at), SweepFlags())
            return
        market = self.market_for(account, at)
        before = account.version
        self._top_up_isolated(account, market, at)
        self._auto_exchange(account, market, at)
        figures = rules.evaluate(account.snapshot(), market, limits=False)
        now = sweep_flags(account, market, figures)
        then = self._flags_at(account, previous)
        if Mode(account.mode) is not Mode.PORTFOLIO:
            if now.at_call and not then.at_call:
                account.issue_margin_call(at, figures.margin)
            if now.past_liquidation and not then.past_liquidation:
                account.trigger_cross_liquidation(at, figures.margin)
            for symbol in sorted(now.isolated_past - then.isolated_past):
                price, mark = now.isolated_prices[symbol]
                account.trigger_isolated_liquidation(at, symbol, price, mark)
        else:
            if now.at_call and not then.at_call:
                account.issue_margin_call(at, figures.margin)
            level = figures.margin.margin_level
            if level is not None and level <= market.portfolio.liquidation_level:
                # Portfolio mode plans again at every sweep at or below the level (§10.10).
                plan = liquidation_plan(account.snapshot(), market)
                account.plan_liquidation(at, figures.margin, plan, market.portfolio.target_level)
        if account.version != before:
            self._touch(account)
        self._sweep_memory[account.id] = (to_micros(at), now)

    def _top_up_isolated(self, account: Account, market: rules.Market, at: datetime) -> None:
        for held in list(account.positions.values()):
            symbol = held["symbol"]
            if held["margin_type"] != ISOLATED or not account.auto_add.get(symbol):
                continue
            terms = market.instruments.get(symbol)
            if terms is None:
                continue  # not listed at the sweep's time: nothing to value it with
            mark = market.mark(symbol, held["entry_price"])
            state = account.isolated_view(symbol, terms)
            if not is_at_liquidation(rules.isolated_view(state, terms), mark):
                continue
            available = rules.available_after_withdrawal(account.snapshot(), market,
                                                         terms.settle, ZERO)
            account.top_up(at=account.posting_time(at), terms=terms, mark=mark,
                           available=available)

    def _flags_at(self, account: Account, previous: int | None) -> SweepFlags:
        """Return what the sweep at `previous` found for this account (from memory, or
        re-evaluated from the account and prices as they were then)."""
        if previous is None:
            return SweepFlags()
        remembered = self._sweep_memory.get(account.id)
        if remembered is not None and remembered[0] == previous:
            return remembered[1]
        moment = from_micros(previous)
        then = self.account_at(account.name, moment)
        if then is None:
            return SweepFlags()
        market = self.market_for(then, moment)
        return sweep_flags(then, market, rules.evaluate(then.snapshot(), market, limits=False))

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
        settled = [terms for terms in due if self._settle_instrument_funding(terms, cmd.at)]
        return APPLIED if settled else ACKNOWLEDGED

    def _settle_instrument_funding(self, terms: InstrumentTerms, period: datetime) -> bool:
        """Settle one instrument's funding time; False when it was settled before."""
        instrument = self._existing_instrument(terms.symbol)
        history = self.reference.instruments[terms.symbol]
        if period in history.periods:
            return False
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
        return True

    def _holders_at(
        self, symbol: str, at: datetime
    ) -> list[tuple[Account, list[tuple[str, Decimal]]]]:
        """Return the accounts holding `symbol` at `at`, with (margin type, qty) of each
        position, read from the account as of `at` when it has moved on since."""
        found = []
        names = {account_id(name).hex: name for name in self._stream_names("account")}
        self.load_accounts([names[stream] for stream in self.holders(symbol) if stream in names])
        for stream in sorted(self.holders(symbol)):
            if stream not in names:
                continue
            name = names[stream]
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
        """Return {asset: {accrued, charged}}: every asset that has had a liability while it
        carried an interest configuration; `accrued` is exact as of `at`, not yet charged."""
        view: dict[str, dict[str, Decimal]] = {}
        for asset in sorted(self._owable_assets(account)):
            if not self._bears_interest(asset):
                continue
            accrued, had_debt, _ = self.accrued_interest(account, asset, at)
            charged = account.interest_charged.get(asset, ZERO)
            if had_debt or charged > ZERO or asset in account.interest_charged:
                view[asset] = {"accrued": accrued, "charged": charged}
        return view

    def accrued_interest(self, account: Account, asset: str, end: datetime
                         ) -> tuple[Decimal, bool, Account | None]:
        """Return (interest on `asset` accrued and not yet charged as of `end`, whether there
        was any liability, the account folded up to `end`), integrating exactly over every
        change of the account, of the marks of its cross positions settled in the asset, and
        of the asset's terms (DESIGN §6.8). Starts from the last charge or interest
        checkpoint, whichever is later."""
        found = self._state_since(account, asset, end)
        if found is None:
            return ZERO, False, None
        state, begin, later, carried = found
        cuts = sorted({begin, *(e.at for e in later if begin < e.at < end)})
        total, had_debt = carried, carried > ZERO
        pending = iter(later)
        upcoming = next(pending, None)
        for here, there in zip(cuts, [*cuts[1:], end], strict=True):
            while upcoming is not None and upcoming.at <= here:
                upcoming.mutate(state)
                upcoming = next(pending, None)
            accrued, owed = self._accrue_between(state, asset, here, there)
            total += accrued
            had_debt = had_debt or owed
        while upcoming is not None and upcoming.at <= end:
            upcoming.mutate(state)
            upcoming = next(pending, None)
        if begin >= end:
            terms = self.reference.asset_terms(asset, end)
            owed = liability(self._coin_equity(state, asset, end)) > ZERO
            had_debt = had_debt or (owed and terms is not None and terms.interest is not None)
        return total, had_debt, state

    def _state_since(
        self, account: Account, asset: str, end: datetime
    ) -> tuple[Account, datetime, list[Any], Decimal] | None:
        """Return where accrual resumes: the account as it was then (a private copy), that
        time, the account's events after it up to `end`, and the interest carried from it."""
        aggregate_id = account_id(account.name)
        last = self._version_at(aggregate_id, to_micros(end))
        if last is None:
            return None
        start = account.interest_from.get(asset)
        checkpoint = self._interest_checkpoint(aggregate_id, asset, to_micros(end))
        carried = ZERO
        if checkpoint is not None and (start is None or checkpoint[0] >= to_micros(start)):
            begin, first, carried = from_micros(checkpoint[0]), checkpoint[1], Decimal(
                checkpoint[2])
        elif start is not None:
            begin, first = start, self._version_at(aggregate_id, to_micros(start)) or 1
        else:
            begin, first = None, 1
        first = min(first, last)
        state = self._account_copy(aggregate_id, first)
        if begin is None:
            begin = state.last_at
        later = self.account_history(aggregate_id, gt=first, lte=last) if last > first else []
        return state, begin, later, carried

    def _account_copy(self, aggregate_id: UUID, version: int) -> Account:
        cached = self._copies.get(aggregate_id)
        if cached is not None and cached[0] == version:
            return deepcopy(cached[1])
        return self.load_account(aggregate_id, version)

    def _accrue_between(self, state: Account, asset: str, here: datetime, there: datetime
                        ) -> tuple[Decimal, bool]:
        """Interest over [here, there), while the account itself does not change: only the
        marks of its cross positions settled in `asset` and the asset's terms can move."""
        if here >= there:
            return ZERO, False
        wallet = state.balances.get(asset, ZERO)
        positions = []
        for held in state.positions.values():
            self._instrument(held["symbol"])  # a fresh process may not have loaded it yet
            terms = self.reference.instrument_terms(held["symbol"], here)
            if held["margin_type"] == CROSS and terms is not None and terms.settle == asset:
                positions.append((held, terms))
        cuts = {to_micros(here)}
        if positions:
            floor = wallet
            for held, terms in positions:
                marks = self._marks_during(held["symbol"], here, there) or [held["entry_price"]]
                floor += min(unrealized_pnl(held["qty"], held["entry_price"], mark,
                                            terms.contract_size, terms.is_inverse)
                             for mark in marks)
            if floor >= ZERO:
                return ZERO, False  # no liability at any mark the interval saw
            for held, _ in positions:
                history = self.reference.instruments[held["symbol"]]
                cuts.update(t for t, _ in history.marks.between(here, there))
                cuts.update(t for t, _ in history.terms.between(here, there))
        elif wallet >= ZERO:
            return ZERO, False
        series = self.reference.assets[asset].terms
        cuts.update(t for t, _ in series.between(here, there))
        points = sorted(t for t in cuts if t < to_micros(there))
        segments = []
        had_debt = False
        for start, stop in zip(points, [*points[1:], to_micros(there)], strict=True):
            moment = from_micros(start)
            debt = liability(self._coin_equity(state, asset, moment))
            asset_terms = series.at(moment)
            interest = asset_terms.interest if asset_terms else None
            had_debt = had_debt or (debt > ZERO and interest is not None)
            segments.append((debt, interest, Decimal(stop - start) / Decimal(1_000_000)))
        return accrued_over(segments), had_debt

    def _coin_equity(self, account: Account, asset: str, at: datetime) -> Decimal:
        positions = []
        for held in account.positions.values():
            if held["margin_type"] != CROSS:
                continue
            self._instrument(held["symbol"])
            terms = self.reference.instrument_terms(held["symbol"], at)
            if terms is None or terms.settle != asset:
                continue
            mark = self.reference.mark_price(held["symbol"], at) or held["entry_price"]
            positions.append((held["qty"], held["entry_price"], mark, terms.contract_size,
                              terms.is_inverse))
        return coin_equity(account.balances.get(asset, ZERO), positions)

    def _marks_during(self, symbol: str, here: datetime, there: datetime) -> list[Decimal]:
        """Return the marks in force at some moment of [here, there)."""
        history = self.reference.instruments[symbol]
        marks = [history.marks.at(here)] if history.marks.at(here) is not None else []
        marks += [price for t, price in history.marks.between(here, there)
                  if t < to_micros(there)]
        return [m for m in marks if m is not None]

    def charge_interest(self, cmd: c.ChargeInterestCmd) -> str:
        """Charge, per account and asset, the interest accrued up to `at` as one amount
        (DESIGN §6.8), and checkpoint what was looked at. Idempotent by `at`; nothing
        accrued, no event."""
        bearing = [name for name in sorted(self._stream_names("asset"))
                   if self._bears_interest(name)]
        if bearing:
            self.load_accounts(self.account_names())
        for name in self.account_names():
            account = self.find_account(name)
            if account is None or self._opened_after(account, cmd.at):
                continue
            owable = self._owable_assets(account)
            for asset in bearing:
                if asset in owable:
                    self._charge(account, asset, cmd.at)
        return APPLIED

    def _charge(self, account: Account, asset: str, at: datetime) -> None:
        accrued, _, folded = self.accrued_interest(account, asset, at)
        on_time = account.last_at <= at
        if accrued > ZERO:
            terms = self.require_asset(asset)
            account.charge_interest(period=at, asset=asset, accrued=accrued,
                                    precision=terms.precision)
            self._touch(account)
            accrued = ZERO
            folded = account if on_time else None
        if on_time and folded is not None and folded.version == account.version:
            # Nothing else can land at or before `at` out of order: checkpoint here.
            stream = account.id.hex
            self._side.checkpoints.append((stream, asset, to_micros(at), account.version,
                                           str(accrued)))
            self._copies[account.id] = (account.version, deepcopy(account))

    def repay(self, cmd: c.RepayCmd) -> str:
        """Convert `with_asset` at index prices into the debt coin (seed 000 §4)."""
        account = self._account(cmd.account)
        terms = self.require_asset(cmd.asset, cmd.at)
        giver = self.require_asset(cmd.with_asset, cmd.at)
        if cmd.asset == cmd.with_asset:
            raise InvalidInputError("repay needs another asset to convert")
        self._check_places(cmd.amount, terms)
        account.require_not_before(cmd.at)
        for asset in (cmd.asset, cmd.with_asset):
            if self.reference.index_price(asset, cmd.at) is None:
                raise NoPriceError(f"{asset} has no index price")
        market = self.market_for(account, cmd.at, (cmd.asset, cmd.with_asset))
        account.repay(at=cmd.at, command_id=cmd.id, asset=cmd.asset, amount=cmd.amount,
                      with_asset=cmd.with_asset, market=market,
                      with_precision=giver.precision)
        self._touch(account)
        return APPLIED

    def _auto_exchange(self, account: Account, market: rules.Market, at: datetime) -> None:
        """Cover coins whose negative balance is worth more than their threshold by
        converting the other positive assets pro rata to their effective collateral, at
        index × discount (seed 001; DESIGN §6.9 and 6.11)."""
        if Mode(account.mode) is Mode.SINGLE_ASSET:
            return
        for asset, wallet in sorted(account.balances.items()):
            terms = market.asset_terms(asset)
            index = market.index(asset)
            threshold, discount = terms.auto_exchange_threshold_usd, terms.auto_exchange_discount
            if wallet >= ZERO or index is None or threshold is None or discount is None:
                continue
            deficit = -wallet
            if deficit * index <= threshold:
                continue
            figures = rules.evaluate(account.snapshot(), market, limits=False)
            givers = [
                (other, entry.effective_usd, entry.index_price)
                for other, entry in figures.collateral.items()
                if other != asset and entry.equity > ZERO and entry.index_price
                and entry.effective_usd > ZERO
            ]
            total = sum((weight for _, weight, _ in givers), ZERO)
            if total <= ZERO:
                continue
            shares = auto_exchange_shares(deficit, index, discount, givers, total,
                                          terms.precision)
            for other, received, given_exact, other_index in shares:
                precision = market.asset_terms(other).precision
                account.auto_exchange(at=at, asset=asset, received=received,
                                      with_asset=other, with_exact=given_exact,
                                      discount=discount, asset_index=index,
                                      with_index=other_index, with_precision=precision)

    def _owable_assets(self, account: Account) -> set[str]:
        """Return the coins the account can owe: those it has held, and the settle assets of
        every symbol it has traded (an unrealised loss alone can make a debt)."""
        for symbol in account.symbols:
            self._instrument(symbol)
        return self.reference.owable_assets(account.balances, account.interest_charged,
                                            account.symbols)

    def _bears_interest(self, asset: str) -> bool:
        self._asset(asset)
        return self.reference.bears_interest(asset)

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
        version = self._version_at(aggregate_id, to_micros(at))
        if version is None:
            return None
        return self.load_account(aggregate_id, version)

    def account_history(
        self, aggregate_id: UUID, gt: int | None = None, lte: int | None = None
    ) -> list[Account.Event]:
        """Return an account's events in order (optionally after `gt`, up to `lte`): the
        committed ones from the store, then those of this unit of work not yet written
        (copies, so that folding them elsewhere cannot reach the events to be stored)."""
        pending = self._pending_events(aggregate_id)
        if not pending:
            return cast(list[Account.Event], list(self.events.get(aggregate_id, gt=gt, lte=lte)))
        head = pending[0].originator_version - 1  # the last version in the store
        events: list[Any] = []
        if gt is None or gt < head:
            events = list(self.events.get(aggregate_id, gt=gt,
                                          lte=head if lte is None else min(lte, head)))
        events += [deepcopy(e) for e in pending
                   if (gt is None or e.originator_version > gt)
                   and (lte is None or e.originator_version <= lte)]
        return cast(list[Account.Event], events)

    def _pending_events(self, aggregate_id: UUID) -> list[Any]:
        touched = self._touched.get(aggregate_id)
        return list(touched.pending_events) if touched is not None else []

    def _version_at(self, aggregate_id: UUID, at_micros: int) -> int | None:
        """Return the account's last version with `at ≤ at_micros`, counting the events of
        this unit of work not yet written (None: nothing yet)."""
        for event in reversed(self._pending_events(aggregate_id)):
            if to_micros(event.at) <= at_micros:
                return cast(int, event.originator_version)
        return self.index.version_at(aggregate_id.hex, at_micros)

    def _interest_checkpoint(self, aggregate_id: UUID, asset: str, at_micros: int
                             ) -> tuple[int, int, str] | None:
        """Return the last interest checkpoint at or before `at_micros`: one this unit of
        work will write, or one in the store."""
        stream = aggregate_id.hex
        found = self.index.interest_checkpoint(stream, asset, at_micros)
        for row in self._side.checkpoints:
            if row[0] == stream and row[1] == asset and row[2] <= at_micros and (
                    found is None or row[2] >= found[0]):
                found = (row[2], row[3], row[4])
        return found

    def load_account(self, aggregate_id: UUID, version: int | None) -> Account:
        """Rebuild an account at `version` from its latest snapshot at or below it and the
        events after (DESIGN §8: a query replays at most SNAPSHOT_EVERY events)."""
        aggregate: Any = None
        after = None
        if self.snapshots is not None:
            for snapshot in self.snapshots.get(aggregate_id, lte=version, desc=True, limit=1):
                aggregate = cast(Any, snapshot).mutate(None)
                after = snapshot.originator_version
        for event in self.account_history(aggregate_id, gt=after, lte=version):
            aggregate = event.mutate(aggregate)
        if aggregate is None:
            raise AggregateNotFoundError(aggregate_id)
        assert isinstance(aggregate, Account), aggregate_id
        return aggregate


@dataclass(frozen=True)
class _Savepoint:
    """How far the working set had got when a command began (see `Ledger.handle`)."""

    side: tuple[int, int, int, int]  # index rows: commands, streams, holders, checkpoints
    snapshots: int


def is_store_error(error: BaseException) -> bool:
    """Tell whether `error` says the store cannot be reached or written: the library's, the
    drivers' or SQLAlchemy's operational and interface errors (not a bug, not a conflict)."""
    if isinstance(error, (StoreUnavailableError, OperationalError, InterfaceError)):
        return True
    origin = type(error).__module__.split(".")[0]
    return origin in ("sqlite3", "psycopg", "psycopg_pool", "sqlalchemy") and type(
        error).__name__ in ("OperationalError", "InterfaceError", "PoolTimeout",
                            "TooManyRequests")


def _raise_store_error(error: BaseException) -> None:
    """Raise `StoreUnavailableError` from `error` when it is a store error (`is_store_error`);
    return otherwise, so that every other error keeps its own type."""
    if is_store_error(error) and not isinstance(error, StoreUnavailableError):
        raise StoreUnavailableError(str(error)) from error


@dataclass(frozen=True)
class SweepFlags:
    """What a sweep found for one account: the crossings it signals are changes of these."""

    at_call: bool = False
    past_liquidation: bool = False
    isolated_past: frozenset[str] = frozenset()
    isolated_prices: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)


def sweep_flags(account: Account, market: rules.Market, figures: rules.AccountFigures
                ) -> SweepFlags:
    margin = figures.margin
    at_call = margin.past_liquidation or is_at_call_level(
        margin.maintenance_margin_usd, margin.effective_equity_usd, MARGIN_CALL_LEVEL)
    if margin.margin_ratio is not None and Mode(account.mode) is Mode.SINGLE_ASSET:
        at_call = at_call or margin.margin_ratio >= MARGIN_CALL_LEVEL
    past: set[str] = set()
    prices: dict[str, tuple[Decimal, Decimal]] = {}
    for held in account.positions.values():
        if held["margin_type"] != ISOLATED:
            continue
        symbol = held["symbol"]
        terms = market.instruments[symbol]
        mark = market.mark(symbol, held["entry_price"])
        view = rules.isolated_view(account.isolated_view(symbol, terms), terms)
        price = isolated_liquidation_price(view, mark)
        if price is not None and is_at_liquidation(view, mark):
            past.add(symbol)
            prices[symbol] = (price, mark)
    return SweepFlags(at_call, margin.past_liquidation, frozenset(past), prices)


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def _previous_funding_time(at: datetime, hours: int) -> datetime:
    return at - timedelta(hours=hours)
