-- Every posting with its account's class and category, its currency's exponent and its UTC day.
-- A view (the staging default): renames and casts of ledger.postings, which is already a table;
-- writing its 10M rows again cost as much as converting them (benchmarks/LEDGER.md). The
-- incremental models below read it with their own recorded_at watermark.
-- (No transaction kind/source: no mart reads them, and the join to ledger.transactions they need
-- would run again in every query over this view.)

with postings as (
    select * from {{ source('ledger', 'postings') }}
),

currencies as (
    select code, exponent from {{ ref('currencies') }}
)

select
    postings.posting_id,
    postings.transaction_id,
    postings.line,
    postings.account_id,
    {{ account_type('postings.account_id') }} as account_type,
    split_part(postings.account_id, ':', 2) as account_category,
    postings.currency,
    currencies.exponent as currency_exponent,
    postings.amount_minor,
    postings.experiment_id,
    postings.occurred_at,
    {{ utc_date('postings.occurred_at') }} as occurred_on,
    postings.recorded_at
from postings
left join currencies on currencies.code = postings.currency
