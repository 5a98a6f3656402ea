-- Debits and credits per currency over the whole ledger. Double entry means net_minor is zero in
-- every currency (test trial_balance_nets_to_zero); amounts in different currencies never net.
select
    currency,
    cast(sum(case when amount_minor > 0 then amount_minor else 0 end) as bigint) as total_debits_minor,
    cast(-sum(case when amount_minor < 0 then amount_minor else 0 end) as bigint) as total_credits_minor,
    cast(sum(amount_minor) as bigint) as net_minor,
    count(*) as posting_count,
    count(distinct transaction_id) as transaction_count
from {{ ref('stg_postings') }}
group by currency
