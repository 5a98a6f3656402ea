-- Balance of every account in every currency it has postings in, debit-positive (a credit-normal
-- account such as revenue or a liability has a negative balance when it is in credit).
select
    account_id,
    account_type,
    currency,
    cast(sum(case when amount_minor > 0 then amount_minor else 0 end) as bigint) as debit_minor,
    cast(-sum(case when amount_minor < 0 then amount_minor else 0 end) as bigint) as credit_minor,
    cast(sum(amount_minor) as bigint) as balance_minor,
    reporting_currency,
    cast(sum(amount_reporting_minor) as bigint) as balance_reporting_minor,
    count(*) as posting_count,
    max(occurred_at) as last_posted_at
from {{ ref('fct_postings') }}
group by account_id, account_type, currency, reporting_currency
