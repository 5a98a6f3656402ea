"""Money as integer minor units with the currency's own ISO 4217 exponent (JPY 0, USD 2, KWD 3).

There are no floats anywhere in the ledger: a float cannot say 0.1 exactly, so amounts arrive as
decimal strings (or Decimal) and are parsed exactly; anything that would need rounding is an error.
"""

import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any


class MoneyError(ValueError):
    """An amount or currency the ledger cannot represent exactly."""


# ISO 4217 list one (active codes, 2026) with their minor-unit exponents. Codes whose exponent is
# "N.A." in the standard (precious metals XAU/XAG/XPT/XPD, XDR, the bond units, XTS, XXX) are left
# out: they have no minor unit, so they cannot be booked in integer minor units.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP "
    "LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR "
    "NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR "
    "ZMW ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    code: exponent
    for codes, exponent in ((_EXPONENT_0, 0), (_EXPONENT_2, 2), (_EXPONENT_3, 3), (_EXPONENT_4, 4))
    for code in codes.split()
}

# One posting's bound. It alone does not keep sums inside BIGINT (9,224 postings of 10**15 pass
# 2**63): LEDGER_MAX_GROSS_MINOR does.
MAX_ABS_MINOR = 10**15
# The ledger's bound: the sum of |amount_minor| over every posting, all currencies together. Every
# sum the ledger and the marts take (a balance, a day's inflow, total debits, a P&L converted to the
# reporting currency at up to ~9 reporting minor units per posting minor unit) is at most this
# times its rate, so it fits BIGINT (9.2e18) and no SUM(...)::BIGINT can overflow. Booking refuses
# a transaction that would pass it (core.ledger.booking).
LEDGER_MAX_GROSS_MINOR = 10**18


def exponent(currency: str) -> int:
    """The number of decimals of `currency`; an unknown code is an error, never a guess."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except (KeyError, TypeError):
        hint = " (codes are upper case)" if isinstance(currency, str) and currency.upper() in CURRENCY_EXPONENTS else ""
        raise MoneyError(
            f"unknown currency {currency!r}{hint}: use an ISO 4217 code such as USD, EUR, JPY or KWD"
        ) from None


def check_currency(currency: str) -> str:
    exponent(currency)
    return currency


def check_minor(amount_minor: Any, currency: str, *, allow_zero: bool = False) -> int:
    """An amount already in minor units: a true int (not bool, not float), non-zero, in range."""
    check_currency(currency)
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise MoneyError(
            f"amount {amount_minor!r} {currency} is a {type(amount_minor).__name__}: amounts are integer "
            f"minor units (parse decimal strings with to_minor)"
        )
    if amount_minor == 0 and not allow_zero:
        raise MoneyError(f"amount is zero {currency}: a zero posting carries no money, leave it out")
    if abs(amount_minor) > MAX_ABS_MINOR:
        raise MoneyError(f"amount {amount_minor} {currency} is beyond +-{MAX_ABS_MINOR} minor units")
    return amount_minor


def to_minor(amount: str | Decimal | int, currency: str) -> int:
    """Parse an amount in major units ("12.34", Decimal("12.34") or 12) into minor units, exactly.

    Floats are refused: 0.1 + 0.2 != 0.3 in binary, and the ledger must not inherit that."""
    places = exponent(currency)
    if isinstance(amount, (bool, float)):
        raise MoneyError(
            f"amount {amount!r} {currency} is a {type(amount).__name__}: pass a decimal string such as "
            f"'{amount}' so it is read exactly"
        )
    if isinstance(amount, str) and not amount.isascii():
        # Decimal reads any Unicode decimal digit ("١٢" is 12): an amount the operator sees as other
        # text must not book silently as a number.
        odd = next((c for c in amount if c.isdecimal() and not c.isascii()), None)
        if odd is not None:
            raise MoneyError(
                f"amount {amount!r} {currency} has the non-ASCII digit {odd!r} (U+{ord(odd):04X} "
                f"{unicodedata.name(odd, 'unnamed')}): write amounts with the ASCII digits 0-9"
            )
    try:
        value = Decimal(amount.strip()) if isinstance(amount, str) else Decimal(amount)
    except (InvalidOperation, TypeError, ValueError):
        raise MoneyError(f"amount {amount!r} {currency} is not a decimal number") from None
    if not value.is_finite():
        raise MoneyError(f"amount {amount!r} {currency} is not a finite number")
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"amount {amount!r} has more decimals than {currency} allows ({places}): round it at the "
            f"source, the ledger never rounds silently"
        )
    return int(scaled)


def to_major(amount_minor: int, currency: str) -> Decimal:
    return Decimal(check_minor(amount_minor, currency, allow_zero=True)).scaleb(-exponent(currency))


def format_minor(amount_minor: int, currency: str) -> str:
    """`1234, "USD"` -> `"12.34 USD"`; `5, "KWD"` -> `"0.005 KWD"`; for messages and reports."""
    places = exponent(currency)
    return f"{to_major(amount_minor, currency):.{places}f} {currency}"
