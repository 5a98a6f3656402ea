-- Every expense posting matched to every budget it counts against, with the budget window it falls
-- in. The rules are core/ledger/budgets.py's: spend is the signed amount on expenses:* accounts (a
-- reversal gives spend back) in the budget's own currency, unconverted (the currency is part of a
-- budget's identity); category = the second segment of the expense account
-- (expenses:ads:experiment:<id> -> ads); experiment = the posting's experiment_id; global = all.
with budgets as (
    select budget_id, scope, scope_key, period, currency from {{ source('ledger', 'budgets') }}
),

spend as (
    select posting_id, account_category, experiment_id, currency, amount_minor, occurred_at
    from {{ ref('stg_postings') }}
    where account_type = 'expense'
)

select
    budgets.budget_id,
    spend.posting_id,
    spend.amount_minor,
    spend.occurred_at,
    {{ utc_window_start('budgets.period', 'spend.occurred_at') }} as window_start,
    {{ utc_window_end('budgets.period', 'spend.occurred_at') }} as window_end
from budgets
inner join spend
    on spend.currency = budgets.currency
    and (
        budgets.scope = 'global'
        or (budgets.scope = 'category' and spend.account_category = budgets.scope_key)
        or (budgets.scope = 'experiment' and spend.experiment_id = budgets.scope_key)
    )
