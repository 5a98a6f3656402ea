-- Every budget against its spend in every window that has spend, including windows before the
-- budget was created so that a new limit can be read against past behaviour.
select
    budget_id,
    scope,
    scope_key,
    period,
    currency,
    window_start,
    window_end,
    limit_minor,
    spent_minor,
    remaining_minor,
    utilization,
    is_exceeded,
    posting_count
from {{ ref('stg_budget_windows') }}
where posting_count > 0
