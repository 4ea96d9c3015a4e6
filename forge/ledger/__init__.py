"""The ledger: every call, every cent, and budgets that concurrency cannot overrun."""

from forge.ledger.store import AttemptRow, Ledger, Limits, Refusal, Reservation, ledger_home

__all__ = ["AttemptRow", "Ledger", "Limits", "Refusal", "Reservation", "ledger_home"]
