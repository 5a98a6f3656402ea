-- Every expense posting that counts as spend, matched to every budget it counts against, with the
-- budget window it counts in. The rules are core/ledger/budgets.py's (_spent):
--   - spend is a positive (debit) posting on an expenses:* account of a transaction that is not a
--     reversal; other credits to expenses never count;
--   - a reversal's credit gives spend back in the window of the spend it reverses (counted_at =
--     the original's occurred_at), so it never frees another window;
--   - transactions whose source is in budgets.UNBUDGETED_SOURCES ('stripe': processor fees) never
--     count; keep the list below equal to it;
--   - the budget's own currency, unconverted (the currency is part of a budget's identity);
--     category = the second segment of the expense account (expenses:ads:experiment:<id> -> ads);
--     experiment = the posting's experiment_id; global = all.
with budgets as (
    select budget_id, scope, scope_key, period, currency from {{ source('ledger', 'budgets') }}
),

spend as (
    select
        postings.posting_id,
        postings.account_category,
        postings.experiment_id,
        postings.currency,
        postings.amount_minor,
        postings.occurred_at,
        case
            when transactions.reverses_transaction_id is null then postings.occurred_at
            else originals.occurred_at
        end as counted_at
    from {{ ref('stg_postings') }} as postings
    inner join {{ source('ledger', 'transactions') }} as transactions
        on transactions.transaction_id = postings.transaction_id
    left join {{ source('ledger', 'transactions') }} as originals
        on originals.transaction_id = transactions.reverses_transaction_id
    where postings.account_type = 'expense'
        and transactions.source not in ('stripe')
        and (
            (transactions.reverses_transaction_id is null and postings.amount_minor > 0)
            or (
                transactions.reverses_transaction_id is not null
                and originals.transaction_id is not null
                and postings.amount_minor < 0
            )
        )
)

select
    budgets.budget_id,
    spend.posting_id,
    spend.amount_minor,
    spend.occurred_at,
    spend.counted_at,
    {{ utc_window_start('budgets.period', 'spend.counted_at') }} as window_start,
    {{ utc_window_end('budgets.period', 'spend.counted_at') }} as window_end
from budgets
inner join spend
    on spend.currency = budgets.currency
    and (
        budgets.scope = 'global'
        or (budgets.scope = 'category' and spend.account_category = budgets.scope_key)
        or (budgets.scope = 'experiment' and spend.experiment_id = budgets.scope_key)
    )
