{{
    config(
        materialized='incremental',
        unique_key='posting_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

-- Every posting with its account's class, its transaction's kind and source, and its UTC day.
-- Incremental on recorded_at (when the row was written), not occurred_at, so that an event booked
-- late for an earlier day is still picked up (see macros/incremental.sql for the lookback).

with postings as (
    select *
    from {{ source('ledger', 'postings') }}
    {% if is_incremental() %}
    where recorded_at >= {{ incremental_watermark('recorded_at') }}
    {% endif %}
),

transactions as (
    select transaction_id, kind, source from {{ source('ledger', 'transactions') }}
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
    transactions.kind as transaction_kind,
    transactions.source as transaction_source,
    postings.occurred_at,
    {{ utc_date('postings.occurred_at') }} as occurred_on,
    postings.recorded_at
from postings
left join transactions on transactions.transaction_id = postings.transaction_id
left join currencies on currencies.code = postings.currency
