{{
    config(
        materialized='incremental',
        unique_key=['cash_date', 'currency'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

-- Money in and out of the cash accounts (assets:cash:*) per UTC day and currency, in native minor
-- units. Incremental: the (day, currency) cells touched by postings recorded since the last run
-- (minus the late-arrival lookback) are recomputed whole, so a refund booked today for last week
-- corrects last week's row. Native amounts never change once written, which keeps this exact.

with cash as (
    select occurred_on, currency, amount_minor, recorded_at
    from {{ ref('stg_postings') }}
    where account_id like 'assets:cash:%'
),

{% if is_incremental() %}
touched as (
    select distinct occurred_on, currency
    from cash
    where recorded_at >= {{ incremental_watermark('last_recorded_at') }}
),
{% endif %}

selected as (
    select cash.*
    from cash
    {% if is_incremental() %}
    inner join touched
        on touched.occurred_on = cash.occurred_on
        and touched.currency = cash.currency
    {% endif %}
)

select
    occurred_on as cash_date,
    currency,
    cast(sum(case when amount_minor > 0 then amount_minor else 0 end) as bigint) as inflow_minor,
    cast(-sum(case when amount_minor < 0 then amount_minor else 0 end) as bigint) as outflow_minor,
    cast(sum(amount_minor) as bigint) as net_minor,
    count(*) as posting_count,
    max(recorded_at) as last_recorded_at
from selected
group by occurred_on, currency
