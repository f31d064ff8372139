"""The contract's error codes, one exception class each (contract/README.md, "Errors").

A rejected command raises a `LedgerError` before any event exists, so it changes nothing. The CLI
turns it into `{"line": …, "type": …, "id": …, "error": code, "message": …}` on stderr.
"""

from __future__ import annotations

from typing import ClassVar


class LedgerError(Exception):
    """A command the ledger refuses; `code` is the contract's error code."""

    code: ClassVar[str] = "invalid_input"


class InvalidInputError(LedgerError):
    code = "invalid_input"


class UnknownAccountError(LedgerError):
    code = "unknown_account"

    def __init__(self, account: str) -> None:
        super().__init__(f"unknown account {account!r}")
        self.account = account


class AccountExistsError(LedgerError):
    code = "account_exists"


class UnknownAssetError(LedgerError):
    code = "unknown_asset"

    def __init__(self, asset: str) -> None:
        super().__init__(f"unknown asset {asset!r}")
        self.asset = asset


class UnknownSymbolError(LedgerError):
    code = "unknown_symbol"

    def __init__(self, symbol: str) -> None:
        super().__init__(f"unknown symbol {symbol!r}")
        self.symbol = symbol


class NoPriceError(LedgerError):
    code = "no_price"


class OutOfOrderError(LedgerError):
    code = "out_of_order"


class IdConflictError(LedgerError):
    code = "id_conflict"


class InsufficientBalanceError(LedgerError):
    code = "insufficient_balance"


class InsufficientMarginError(LedgerError):
    code = "insufficient_margin"


class ModeChangeBlockedError(LedgerError):
    code = "mode_change_blocked"


class NotAllowedInModeError(LedgerError):
    code = "not_allowed_in_mode"


class InsufficientEquityError(LedgerError):
    code = "insufficient_equity"


class LeverageTooHighError(LedgerError):
    code = "leverage_too_high"


class ConcurrentWriteError(Exception):
    """Another process saved first: this ledger's view was stale and nothing was written.
    Not a command error: discard the working set (done) and send the command again."""


class StoreUnavailableError(Exception):
    """The store cannot be reached (exit status 2); not a command error."""
