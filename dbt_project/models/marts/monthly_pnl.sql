-- Profit and loss per UTC calendar month in the reporting currency, over every revenue:* and
-- expenses:* posting (with or without an experiment).
select
    cast(date_trunc('month', {{ utc_wall('occurred_at') }}) as date) as month_start,
    reporting_currency,
    cast(-sum(case when account_type = 'revenue' then amount_reporting_minor else 0 end) as bigint)
        as revenue_minor,
    cast(sum(case when account_type = 'expense' then amount_reporting_minor else 0 end) as bigint)
        as cost_minor,
    cast(-sum(amount_reporting_minor) as bigint) as profit_minor,
    count(distinct transaction_id) as transaction_count
from {{ ref('fct_postings') }}
where account_type in ('revenue', 'expense')
group by 1, reporting_currency
