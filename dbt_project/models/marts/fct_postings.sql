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
-- Conversion, as core/fx.py: through the euro, with each currency's rate of the posting's UTC day
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

rates as (
    select * from {{ ref('stg_fx_rates') }}
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
    left join rates as posting_rate
        on posting_rate.currency = postings.currency
        and posting_rate.rate_date <= postings.occurred_on
        and (posting_rate.valid_until is null or postings.occurred_on < posting_rate.valid_until)
        and postings.occurred_on - posting_rate.rate_date <= {{ max_age }}
    left join rates as reporting_rate
        on reporting_rate.currency = {{ reporting }}
        and reporting_rate.rate_date <= postings.occurred_on
        and (reporting_rate.valid_until is null or postings.occurred_on < reporting_rate.valid_until)
        and postings.occurred_on - reporting_rate.rate_date <= {{ max_age }}
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
)

select
    fractions.posting_id,
    fractions.transaction_id,
    fractions.account_id,
    fractions.account_type,
    fractions.account_category,
    fractions.currency,
    fractions.amount_minor,
    fractions.experiment_id,
    fractions.occurred_at,
    fractions.occurred_on,
    fractions.recorded_at,
    {{ reporting }} as reporting_currency,
    case
        when fractions.currency = {{ reporting }} then cast(1 as double precision)
        else cast(reporting_per_eur_nano as double precision) / currency_per_eur_nano
    end as fx_rate,
    case when fractions.currency <> {{ reporting }} then currency_rate_date end as currency_rate_date,
    case when fractions.currency <> {{ reporting }} then reporting_rate_date end as reporting_rate_date,
    case
        when fractions.currency = {{ reporting }} then null
        when currency_rate_date is null then reporting_rate_date
        when reporting_rate_date is null then currency_rate_date
        when currency_rate_date < reporting_rate_date then currency_rate_date
        else reporting_rate_date
    end as fx_rate_date,
    case
        when fractions.currency = {{ reporting }} then fractions.amount_minor
        else cast({{ div_round_half_even('reporting_numerator', 'reporting_denominator') }} as bigint)
    end as amount_reporting_minor
from fractions
