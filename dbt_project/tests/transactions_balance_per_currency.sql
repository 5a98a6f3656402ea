-- Double entry: within every transaction the postings of each currency sum to zero. It names the
-- culprit when trial_balance_nets_to_zero fails. A warning, not an error, so that it does not skip
-- the marts below stg_postings: the trial balance is the gate, and it has to run to fail.
{{ config(severity='warn') }}

select transaction_id, currency, sum(amount_minor) as imbalance_minor
from {{ ref('stg_postings') }}
group by transaction_id, currency
having sum(amount_minor) <> 0
