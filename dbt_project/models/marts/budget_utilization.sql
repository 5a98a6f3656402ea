-- Every budget against its spend in the window that contains the reporting instant (the run's
-- time, or var budget_as_of): the current UTC hour, day or month, or all time for a total budget.
select
    budget_id,
    scope,
    scope_key,
    period,
    currency,
    as_of,
    window_start,
    window_end,
    limit_minor,
    spent_minor,
    remaining_minor,
    utilization,
    is_exceeded,
    posting_count
from {{ ref('stg_budget_windows') }}
where is_current
