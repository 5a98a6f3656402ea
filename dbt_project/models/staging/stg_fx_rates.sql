-- ECB rates as exact integers: units of currency per EUR, in billionths. Published rates have at
-- most six significant digits, so rounding the stored double to 1e-9 recovers the published
-- decimal exactly (as core/ledger/fx.py's Decimal(repr(float)) does). valid_until is the currency's next
-- rate day: a posting on day D uses the row with rate_date <= D < valid_until, the rate of D or of
-- the nearest previous day with one (weekends, holidays, today before the ECB publishes).
-- EUR is not here: it is 1 by definition.
with published as (
    select
        rate_date,
        upper(currency) as currency,
        cast(round(per_eur * 1000000000) as bigint) as per_eur_nano
    from {{ source('ledger', 'fx_rates') }}
    where upper(currency) <> 'EUR'
)

select
    rate_date,
    currency,
    per_eur_nano,
    lead(rate_date) over (partition by currency order by rate_date) as valid_until
from published
