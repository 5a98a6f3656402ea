-- Profit and loss per experiment in the reporting currency, from the postings on revenue:* and
-- expenses:* accounts that carry the experiment's id. Revenue is credits (so the sign flips),
-- cost is debits net of reversals.
with postings as (
    select *
    from {{ ref('fct_postings') }}
    where experiment_id is not null
      and account_type in ('revenue', 'expense')
),

totals as (
    select
        experiment_id,
        reporting_currency,
        cast(-sum(case when account_type = 'revenue' then amount_reporting_minor else 0 end) as bigint)
            as revenue_minor,
        cast(sum(case when account_type = 'expense' then amount_reporting_minor else 0 end) as bigint)
            as cost_minor,
        count(distinct transaction_id) as transaction_count,
        min(occurred_at) as first_event_at,
        max(occurred_at) as last_event_at
    from postings
    group by experiment_id, reporting_currency
)

select
    experiment_id,
    reporting_currency,
    revenue_minor,
    cost_minor,
    revenue_minor - cost_minor as profit_minor,
    case
        when cost_minor = 0 then null
        else cast(revenue_minor - cost_minor as double precision) / cost_minor
    end as roi,
    transaction_count,
    first_event_at,
    last_event_at
from totals
