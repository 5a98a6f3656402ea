{{
    config(
        materialized='incremental',
        unique_key='posting_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

-- Every posting with its amount in the reporting currency. Incremental like stg_postings (on
-- recorded_at), and it also reconverts the rows held whose rate can have changed (see `stale`).
-- Separate from stg_postings so that a missing rate stops only the reporting-currency marts: the
-- trial balance, cash flow and budgets are native amounts and still build.
--
-- Conversion, as core/ledger/fx.py: through the euro, with each currency's rate of the posting's UTC day
-- or of its nearest previous rate day, at most var fx_max_rate_age_days old (older means rates
-- stopped loading: the amount stays null and the not_null test fails rather than use a stale
-- rate); exact integer arithmetic, rounded half-even to the reporting currency's minor unit.

{%- set reporting = reporting_currency() %}
{%- set max_age = var("fx_max_rate_age_days") | int %}

with

{% if is_incremental() %}
-- Rows already held whose conversion can change: a rate published since, for a day between the
-- rate a row used and the row's own day (today's ECB rate arriving after a posting of today), a
-- row that had no rate yet, or a change of the reporting currency.
stale as (
    select held.posting_id
    from {{ this }} as held
    where held.reporting_currency <> {{ reporting }}
       or (
           held.currency <> {{ reporting }}
           and exists (
               select 1
               from {{ ref('stg_fx_rates') }} as newer
               where newer.rate_date <= held.occurred_on
                 and (
                     (newer.currency = held.currency
                      and newer.rate_date > coalesce(held.currency_rate_date, cast('1900-01-01' as date)))
                     or (newer.currency = {{ reporting }}
                         and newer.rate_date > coalesce(held.reporting_rate_date, cast('1900-01-01' as date)))
                 )
           )
       )
),
{% endif %}

postings as (
    select *
    from {{ ref('stg_postings') }}
    {% if is_incremental() %}
    where recorded_at >= {{ incremental_watermark('recorded_at') }}
       or posting_id in (select posting_id from stale)
    {% endif %}
),

currencies as (
    select code, exponent from {{ ref('currencies') }}
),

-- Each rate spread over the days it serves: a posting of day D uses the rate with
-- rate_date <= D < valid_until and D - rate_date <= max_age, so there is at most one rate per
-- currency and day, and the postings join it on equality. (The same conditions as a range join
-- made every posting meet every rate of its currency: the slow part of the model.)
daily_rates as (
    select
        rates.currency,
        rates.rate_date + age.days as rate_day,
        rates.rate_date,
        rates.per_eur_nano
    from {{ ref('stg_fx_rates') }} as rates
    cross join (
        {%- for days in range(max_age + 1) %}
        select {{ days }} as days {% if not loop.last %}union all{% endif %}
        {%- else %}
        select 0 as days where 1 = 0
        {%- endfor %}
    ) as age
    where rates.valid_until is null or rates.rate_date + age.days < rates.valid_until
),

rated as (
    select
        postings.*,
        posting_rate.rate_date as currency_rate_date,
        reporting_rate.rate_date as reporting_rate_date,
        case when postings.currency = 'EUR' then 1000000000 else posting_rate.per_eur_nano end
            as currency_per_eur_nano,
        case when {{ reporting }} = 'EUR' then 1000000000 else reporting_rate.per_eur_nano end
            as reporting_per_eur_nano,
        reporting_ccy.exponent as reporting_exponent
    from postings
    left join daily_rates as posting_rate
        on posting_rate.currency = postings.currency
        and posting_rate.rate_day = postings.occurred_on
    left join daily_rates as reporting_rate
        on reporting_rate.currency = {{ reporting }}
        and reporting_rate.rate_day = postings.occurred_on
    left join currencies as reporting_ccy on reporting_ccy.code = {{ reporting }}
),

-- amount / 10^e_cur / per_eur_cur * per_eur_rep * 10^e_rep as one fraction of integers.
fractions as (
    select
        rated.*,
        cast(amount_minor as {{ wide_integer() }}) * reporting_per_eur_nano
            * {{ minor_per_major('reporting_exponent') }} as reporting_numerator,
        cast(currency_per_eur_nano as {{ wide_integer() }})
            * {{ minor_per_major('currency_exponent') }} as reporting_denominator
    from rated
),

-- The truncated quotient of |numerator| / denominator, computed once (a 128-bit division per row
-- is the costly step of the conversion), and from it the remainder.
divided as (
    select
        fractions.*,
        {{ integer_div('abs(reporting_numerator)', 'reporting_denominator') }} as reporting_quotient
    from fractions
),

converted as (
    select
        divided.*,
        abs(reporting_numerator) - reporting_quotient * reporting_denominator as reporting_remainder
    from divided
)

select
    converted.posting_id,
    converted.transaction_id,
    converted.account_id,
    converted.account_type,
    converted.account_category,
    converted.currency,
    converted.amount_minor,
    converted.experiment_id,
    converted.occurred_at,
    converted.occurred_on,
    converted.recorded_at,
    {{ reporting }} as reporting_currency,
    case
        when converted.currency = {{ reporting }} then cast(1 as double precision)
        else cast(reporting_per_eur_nano as double precision) / currency_per_eur_nano
    end as fx_rate,
    case when converted.currency <> {{ reporting }} then currency_rate_date end as currency_rate_date,
    case when converted.currency <> {{ reporting }} then reporting_rate_date end as reporting_rate_date,
    case
        when converted.currency = {{ reporting }} then null
        when currency_rate_date is null then reporting_rate_date
        when reporting_rate_date is null then currency_rate_date
        when currency_rate_date < reporting_rate_date then currency_rate_date
        else reporting_rate_date
    end as fx_rate_date,
    case
        when converted.currency = {{ reporting }} then converted.amount_minor
        else cast({{ round_half_even('reporting_numerator', 'reporting_denominator', 'reporting_quotient',
                                     'reporting_remainder') }} as bigint)
    end as amount_reporting_minor
from converted
