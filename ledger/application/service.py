"""The ledger application: dispatch and idempotency over a unit of work, readers and the
command handlers by family.

- `unit_of_work.UnitOfWork`: the working set, its caches, snapshots, catch-up and the one
  transaction (a command is one unit: it commits whole with its batch or leaves nothing);
- `reader.ReferenceReader`: reference data in force at T, loaded on first use;
- `history.AccountHistory`: an account after any version or as of any second;
- `handlers/`: one class per family of commands (reference, money, trading, isolated,
  portfolio, funding and delivery, interest, the sweep), each method in the contract's check
  order (DESIGN 6.11): shape (the command model) → idempotency (here) → `unknown_*` → checks
  that need reference data → `out_of_order` → business rules → events.

`Ledger.handle` looks the command's idempotency key up, takes a savepoint, runs the handler
and, if it fails after changing anything, has the unit of work write the commands before it
and nothing of it. Inside `with ledger.batch():` many commands share one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal, InvalidOperation, Overflow
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder, Mapper, Transcoding

from ledger.application import commands as c
from ledger.application.handlers.base import ACKNOWLEDGED, APPLIED
from ledger.application.handlers.interest import InterestCommands
from ledger.application.handlers.isolated import IsolatedCommands
from ledger.application.handlers.money import MoneyCommands
from ledger.application.handlers.portfolio import PortfolioCommands
from ledger.application.handlers.reference import ReferenceCommands
from ledger.application.handlers.settlement import SettlementCommands
from ledger.application.handlers.sweep import SweepCommands
from ledger.application.handlers.trading import TradingCommands
from ledger.application.history import AccountHistory
from ledger.application.lean import LeanMapper
from ledger.application.reader import ReferenceReader
from ledger.application.reference import ReferenceData
from ledger.application.store import IndexQueries, environment, sqlite_path
from ledger.application.unit_of_work import (
    SNAPSHOT_EVERY,
    UnitOfWork,
    is_store_error,
    raise_store_error,
)
from ledger.domain.account import Account
from ledger.domain.postings import Posting
from ledger.errors import IdConflictError, InvalidInputError, LedgerError
from ledger.rules import margin as rules
from ledger.rules.terms import AssetTerms, InstrumentTerms

__all__ = ["ACKNOWLEDGED", "APPLIED", "SNAPSHOT_EVERY", "Ledger", "is_store_error"]


class PostingAsList(Transcoding):
    type = Posting
    name = "posting"

    def encode(self, obj: Posting) -> list[str]:
        return [obj.account, obj.asset, str(obj.amount)]

    def decode(self, data: list[str]) -> Posting:
        return Posting(data[0], data[1], Decimal(data[2]))


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
        if not url.startswith("sqlite:"):
            from ledger.application.pgstore import shorten_retries

            shorten_retries(self.recorder)
            if self.snapshots is not None:
                shorten_retries(self.snapshots.recorder)
        if self.snapshots is not None:
            # Snapshots are written in the events' transaction (one command, one unit).
            self.recorder.snapshots_table = (  # type: ignore[attr-defined]
                self.snapshots.recorder.events_table_name)  # type: ignore[attr-defined]
        self.history = AccountHistory(self)
        self.uow = UnitOfWork(self, self.history)
        self.history.pending = self.uow.pending_events
        self.history.pending_checkpoints = lambda: self.uow.side.checkpoints
        self.refs = ReferenceReader(self.uow)
        parts = (self.uow, self.refs, self.history)
        self.reference_commands = ReferenceCommands(*parts)
        self.money = MoneyCommands(*parts)
        self.trading = TradingCommands(*parts)
        self.isolated = IsolatedCommands(*parts)
        self.portfolio = PortfolioCommands(*parts)
        self.settlement = SettlementCommands(*parts)
        self.interest = InterestCommands(*parts)
        self.sweep = SweepCommands(*parts)
        self.handlers: dict[str, Callable[[Any], str]] = {
            "asset": self.reference_commands.asset,
            "instrument": self.reference_commands.instrument,
            "mark_price": self.reference_commands.mark_price,
            "index_price": self.reference_commands.index_price,
            "funding_rate": self.reference_commands.funding_rate,
            "risk_unit": self.reference_commands.risk_unit,
            "portfolio_margin": self.reference_commands.portfolio_margin,
            "open_account": self.money.open_account,
            "change_mode": self.money.change_mode,
            "deposit": self.money.deposit,
            "withdraw": self.money.withdraw,
            "transfer": self.money.transfer,
            "repay": self.money.repay,
            "fill": self.trading.fill,
            "open_orders": self.trading.open_orders,
            "set_leverage": self.trading.set_leverage,
            "set_auto_add_margin": self.isolated.set_auto_add_margin,
            "adjust_isolated_margin": self.isolated.adjust_isolated_margin,
            "set_spot_in_use": self.portfolio.set_spot_in_use,
            "settle_funding": self.settlement.settle_funding,
            "settle_delivery": self.settlement.settle_delivery,
            "charge_interest": self.interest.charge_interest,
            "check_margin": self.sweep.check_margin,
        }

    def construct_mapper(self) -> Mapper[UUID]:
        """The library's mapper that also writes and reads the lean form (issue 11)."""
        return self.factory.mapper(transcoder=self.construct_transcoder(),
                                   mapper_class=LeanMapper)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(PostingAsList())

    # ------------------------------------------------------------------ dispatch

    def handle(self, command: c.Command,
               identity: tuple[str, str, str] | None = None) -> str:
        """Apply one command; return "applied" or "acknowledged" (a repeat). `identity`:
        its `commands.identity` when the caller has it already (the feed runner).

        A command is one unit: inside a batch, its events and index rows join the batch's
        transaction; if it fails after it has changed anything (a rejection found late, an
        internal error, the store lost), the commands before it are written as they were and
        nothing of it. Nothing inside a command writes to the store."""
        handler = self.handlers.get(command.type)
        if handler is None:
            raise InvalidInputError(f"command type {command.type!r} is not supported yet")
        try:
            # Idempotency before anything reads the store (DESIGN 6.11 check order): money
            # commands by (type, account, id), periodic ones by `at`, the rest by content.
            content, digest, key = identity or c.identity(command)
            if self.money.leg not in (None, "out"):  # a later leg of a transfer (shards.py)
                key = f"{key}{c.KEY_SEPARATOR}{self.money.leg}"
            prior = self._prior(key)
            resume = (bool(prior) and prior == digest and isinstance(command, c.TransferCmd)
                      and self.money.leg is None and self._unfinished_transfer(command, key))
            if self.money.leg == "in" and not prior and self._prior(
                    key.removesuffix("in") + "return"):
                # The destination refused this transfer before and its money went back: a
                # repeat of the transfer finds it finished and records no in-leg now.
                return ACKNOWLEDGED
        except Exception as error:
            raise_store_error(error)
            raise
        if prior and not resume:
            if prior == digest or isinstance(command, c.PeriodicCmd):
                return ACKNOWLEDGED
            raise IdConflictError(self._conflict(command, key, content))
        uow = self.uow
        mark = uow.savepoint()
        self.money.legs_done = ()
        if resume:
            self.money.leg = "resume"  # only the in-leg (and a return leg if it is refused)
        try:
            try:
                outcome = handler(command)
            except (InvalidOperation, Overflow) as error:
                # Entry bounds keep every figure within 34 significant digits; one that a
                # command still pushes beyond (a mark far from the entry of a huge position)
                # is refused, never rounded and never an internal error.
                raise InvalidInputError(
                    f"a figure of this {command.type} exceeds the 34 significant digits the "
                    "ledger carries exactly") from error
        except LedgerError as error:
            if getattr(error, "keeps_changes", False):
                # A transfer the destination refused keeps its out- and return legs (the
                # transfer is done, money back at the source) and reports the refusal.
                self._finish(command, key, digest, content, known=resume)
                raise
            if uow.changed_since(mark):
                uow.abandon(mark)  # refused after a change: it must leave nothing
            raise
        except BaseException as error:
            if is_store_error(error):
                uow.discard()  # the store is gone: the batch's earlier commands wait for a re-run
            else:
                uow.abandon(mark)
            raise_store_error(error)
            raise
        finally:
            if resume:
                self.money.leg = None
        if outcome == APPLIED:
            self._finish(command, key, digest, content, known=resume)
        else:
            uow.finish_command()
            if not uow.in_batch:
                uow.flush()
        return outcome

    def _finish(self, command: c.Command, key: str, digest: str, content: str,
                known: bool = False) -> None:
        """Keep an applied command: its idempotency key (and those of the transfer legs it
        recorded, so that shard workers acknowledge them too), then write unless batched.
        `known`: the key is stored already (a transfer resumed after its out-leg)."""
        uow = self.uow
        uow.finish_command()
        if not known:
            uow.remember_key(key, digest, command.at, content)
        for leg in self.money.legs_done:
            uow.remember_key(f"{key}{c.KEY_SEPARATOR}{leg}", digest, command.at, content)
        if not uow.in_batch:
            uow.flush()

    # ------------------------------------------------------------------ idempotency

    def prefetch_keys(self, keys: list[str]) -> None:
        """Look up many idempotency keys at once (the feed runner calls it per chunk)."""
        seen = self.uow.keys
        missing = [key for key in keys if key not in seen]
        if missing:
            found = self.index.seen_commands(missing)
            for key in missing:
                seen[key] = found.get(key, "")

    def _conflict(self, command: c.Command, key: str, content: str) -> str:
        """Say which fields differ from the command that first used the id."""
        identifier = getattr(command, "id", "")
        first = next((row[3] for row in self.uow.side.commands if row[0] == key), None)
        if first is None:
            first = self.index.command_content(key)
        if first is None:
            return f"id {identifier!r} was used by a different command"
        fields = c.differing_fields(json.loads(first), json.loads(content))
        return (f"id {identifier!r} was used by a different command "
                f"({', '.join(fields)} {'differs' if len(fields) == 1 else 'differ'})")

    def _unfinished_transfer(self, command: c.TransferCmd, key: str) -> bool:
        """Tell whether a transfer whose key is stored stopped after its out-leg: a shard
        worker committed the out-leg, then the run stopped before the in- or return leg.

        Its money waits in `system:transit`; any later run (one process or any number of
        workers) finishes it, so events never depend on where a feed was split. A transfer
        recorded before the legs existed has no leg keys either, but its `TransferredOut`
        posts straight to the destination: it is finished."""
        sep = c.KEY_SEPARATOR
        if self._prior(f"{key}{sep}in") or self._prior(f"{key}{sep}return"):
            return False
        from ledger.domain.ids import account_id
        from ledger.domain.postings import SYSTEM_TRANSIT

        for event in self.account_history(account_id(command.from_)):
            if (isinstance(event, Account.TransferredOut)
                    and event.command_id == command.id):
                return any(p.account == SYSTEM_TRANSIT for p in event.postings)
        return False

    def _prior(self, key: str) -> str:
        seen = self.uow.keys
        if key not in seen:
            seen[key] = self.index.seen_commands([key]).get(key, "")
        return seen[key]

    # ------------------------------------------------------------------ the unit of work

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Apply the commands inside in one transaction (written when the block ends)."""
        with self.uow.batch():
            yield

    def flush(self) -> None:
        self.uow.flush()

    def discard(self) -> None:
        """Forget everything not yet written (after an internal error or a lost race)."""
        self.uow.discard()

    def catch_up(self) -> int:
        return self.uow.catch_up()

    @property
    def flush_listeners(self) -> list[Callable[[], None]]:
        return self.uow.flush_listeners

    # ------------------------------------------------------------------ reads

    @property
    def reference(self) -> ReferenceData:
        return self.refs.data

    @reference.setter
    def reference(self, data: ReferenceData) -> None:
        self.refs.data = data

    def account_names(self) -> list[str]:
        return self.uow.account_names()

    def find_account(self, name: str) -> Account | None:
        return self.uow.find_account(name)

    def load_accounts(self, names: list[str], chunk: int = 2000) -> None:
        self.uow.load_accounts(names, chunk)

    def holders(self, symbol: str) -> set[str]:
        return self.uow.holders(symbol)

    def account_at(self, name: str, at: datetime | None) -> Account | None:
        """Return the account as it was after its last event with `at ≤ at` (None: not yet)."""
        if at is None:
            return self.find_account(name)
        return self.money.account_at(name, at)

    def account_history(
        self, aggregate_id: UUID, gt: int | None = None, lte: int | None = None
    ) -> list[Account.Event]:
        return self.history.events(aggregate_id, gt=gt, lte=lte)

    def load_account(self, aggregate_id: UUID, version: int | None) -> Account:
        return self.history.load_account(aggregate_id, version)

    def require_asset(self, name: str, at: datetime | None = None) -> AssetTerms:
        return self.refs.require_asset(name, at)

    def require_instrument(self, symbol: str, at: datetime | None = None) -> InstrumentTerms:
        return self.refs.require_instrument(symbol, at)

    def market_for(self, account: Account, at: datetime,
                   extra_assets: tuple[str, ...] = ()) -> rules.Market:
        return self.refs.market_for(account, at, extra_assets)

    def figures(self, account: Account, at: datetime, *, limits: bool = False,
                extra_assets: tuple[str, ...] = ()) -> rules.AccountFigures:
        return self.money.figures(account, at, limits=limits, extra_assets=extra_assets)

    def interest_view(self, account: Account, at: datetime) -> dict[str, dict[str, Decimal]]:
        return self.interest.interest_view(account, at)

    def accrued_interest(self, account: Account, asset: str, end: datetime
                         ) -> tuple[Decimal, bool, Account | None]:
        return self.interest.accrued_interest(account, asset, end)

    @property
    def swept_skipped(self) -> int:
        """Accounts the last sweep left alone because their history is later than it."""
        return self.sweep.swept_skipped


