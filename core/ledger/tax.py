"""The tax hook: when revenue is booked with a customer country, move the tax share of it to
liabilities:tax:<country>.

Booked revenue is what the customer paid, so it is tax-inclusive. For a revenue posting of gross
G (minor units) and a rate r the tax is G * r / (1 + r) rounded half-even to a whole minor unit;
the remainder stays in revenue. The hook adds two postings (debit the revenue account by the tax,
credit the tax liability by the same amount), so the transaction still balances exactly.

Any callable `(country, currency, gross_minor) -> tax_minor` is a TaxCalculator; the default
reads the rate table in core/ledger/config/tax_rates.yaml.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from functools import cache
from pathlib import Path
from typing import Protocol

import yaml

DEFAULT_RATES_PATH = Path(__file__).parent / "config" / "tax_rates.yaml"
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class TaxError(ValueError):
    pass


class TaxCalculator(Protocol):
    def __call__(self, country: str, currency: str, gross_minor: int) -> int:
        """The tax included in `gross_minor` (>= 0), in the same currency's minor units."""
        ...


def check_country(country: str) -> str:
    if not isinstance(country, str) or not _COUNTRY.match(country):
        raise TaxError(f"customer country {country!r} is not an ISO 3166-1 alpha-2 code such as DE or US")
    return country


def tax_account(country: str) -> str:
    return f"liabilities:tax:{check_country(country).lower()}"


def inclusive_tax(gross_minor: int, rate: Decimal) -> int:
    """gross * rate / (1 + rate), rounded half-even on minor units (exact Decimal arithmetic)."""
    with localcontext() as context:
        context.prec = 50
        share = Decimal(gross_minor) * rate / (Decimal(1) + rate)
        return int(share.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class TaxRates:
    """The default calculator: one standard rate per country."""

    rates: Mapping[str, Decimal]
    origin: str = "core/ledger/config/tax_rates.yaml"

    def rate(self, country: str) -> Decimal:
        try:
            return self.rates[check_country(country)]
        except KeyError:
            raise TaxError(
                f"no tax rate for customer country {country} in {self.origin}: add it "
                f'(use "0" if revenue from {country} owes no tax)'
            ) from None

    def __call__(self, country: str, currency: str, gross_minor: int) -> int:
        return inclusive_tax(gross_minor, self.rate(country))


def load_tax_rates(path: Path = DEFAULT_RATES_PATH) -> TaxRates:
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if document.get("rounding", "half_even") != "half_even":
        raise TaxError(f"{path}: only rounding: half_even is supported, got {document.get('rounding')!r}")
    rates: dict[str, Decimal] = {}
    for country, value in (document.get("rates") or {}).items():
        if not isinstance(country, str):
            raise TaxError(f"{path}: country key {country!r} is not text; quote it (YAML reads a bare NO as false)")
        if isinstance(value, float):
            raise TaxError(
                f'{path}: rate for {country} is the float {value}; quote it ("{value}") so it is read exactly'
            )
        try:
            rate = Decimal(str(value))
        except InvalidOperation:
            raise TaxError(f"{path}: rate for {country} is {value!r}, not a decimal number") from None
        if not Decimal(0) <= rate < Decimal(1):
            raise TaxError(f'{path}: rate for {country} is {rate}; rates are fractions in [0, 1), e.g. "0.19"')
        rates[check_country(country)] = rate
    return TaxRates(rates, origin=str(path))


@cache
def default_tax() -> TaxRates:
    return load_tax_rates()


def tax_postings(
    account: str, currency: str, amount_minor: int, country: str, calculator: TaxCalculator | None = None
) -> list[tuple[str, str, int]]:
    """The postings that move the tax share of one revenue posting to liabilities:tax:<country>.

    Revenue is a credit (amount < 0); a debit to revenue (a refund booked as such) gets the
    mirror image, so tax is given back in the same proportion. Returns [] when the tax is zero."""
    calculator = calculator or default_tax()
    gross = -amount_minor
    tax = calculator(check_country(country), currency, abs(gross))
    if isinstance(tax, bool) or not isinstance(tax, int) or not 0 <= tax <= abs(gross):
        raise TaxError(
            f"tax calculator returned {tax!r} for {abs(gross)} {currency} from {country}: it must be "
            f"an int between 0 and the gross amount"
        )
    if tax == 0:
        return []
    signed = tax if gross > 0 else -tax
    return [(account, currency, signed), (tax_account(country), currency, -signed)]
