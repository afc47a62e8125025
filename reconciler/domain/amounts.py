"""Amounts as people read them, and the check of a gateway's amount against the registered one.

Amounts are integers in the currency's minor unit; most currencies have two decimals,
these have none or three (ISO 4217's exponent).
"""

from __future__ import annotations

ZERO_DECIMALS = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()  # noqa: SIM905
)
THREE_DECIMALS = frozenset("BHD IQD JOD KWD LYD OMR TND".split())  # noqa: SIM905


def exponent(currency: str) -> int:
    """Return how many decimals the currency's minor unit has."""
    code = currency.upper()
    if code in ZERO_DECIMALS:
        return 0
    return 3 if code in THREE_DECIMALS else 2


def format_minor(amount: int, currency: str) -> str:
    """Write an amount in minor units as people read it: 2500 INR → `25.00 INR`."""
    places = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**places)
    number = f"{whole}.{part:0{places}d}" if places else str(whole)
    return f"{sign}{number} {currency.upper()}"


def mismatch(
    registered: int, registered_currency: str, reported: int | None, reported_currency: str | None
) -> str | None:
    """Say, in words, how a gateway's amount differs from the registered one (None: it agrees).

    A report without an amount or a currency says nothing about the amount.
    """
    if reported is None or reported_currency is None:
        return None
    if reported == registered and reported_currency.upper() == registered_currency.upper():
        return None
    return (
        f"the gateway reports {format_minor(reported, reported_currency)}; "
        f"registered {format_minor(registered, registered_currency)}"
    )
