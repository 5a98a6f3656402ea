-- Each budget in each window that has spend, and in the window containing the reporting instant
-- (var budget_as_of, or the run's time), with the spend and the limit in force: the latest
-- version in ledger.budget_limits changed before the window ends (the limit the budget was
-- created with for windows before it existed). A "total" budget has one window, all of time.
with budgets as (
    select budget_id, scope, scope_key, period, currency, limit_minor as created_limit_minor
    from {{ source('ledger', 'budgets') }}
),

spent as (
    select
        budget_id,
        window_start,
        max(window_end) as window_end,
        cast(sum(amount_minor) as bigint) as spent_minor,
        count(*) as posting_count
    from {{ ref('stg_budget_spend') }}
    group by budget_id, window_start
),

reported as (
    select
        budget_id,
        {{ budget_as_of() }} as as_of
    from budgets
),

current_windows as (
    select
        budgets.budget_id,
        reported.as_of,
        {{ utc_window_start('budgets.period', 'reported.as_of') }} as window_start,
        {{ utc_window_end('budgets.period', 'reported.as_of') }} as window_end
    from budgets
    inner join reported on reported.budget_id = budgets.budget_id
),

windows as (
    select budget_id, window_start, window_end from spent
    union
    select budget_id, window_start, window_end from current_windows
),

limits as (
    select
        windows.budget_id,
        windows.window_start,
        versions.limit_minor,
        row_number() over (
            partition by windows.budget_id, windows.window_start order by versions.version desc
        ) as newest_first
    from windows
    inner join {{ source('ledger', 'budget_limits') }} as versions
        on versions.budget_id = windows.budget_id
        and (windows.window_end is null or versions.changed_at < windows.window_end)
),

windowed as (
    select
        budgets.budget_id,
        budgets.scope,
        budgets.scope_key,
        budgets.period,
        budgets.currency,
        windows.window_start,
        windows.window_end,
        current_windows.budget_id is not null as is_current,
        current_windows.as_of,
        coalesce(limits.limit_minor, budgets.created_limit_minor) as limit_minor,
        coalesce(spent.spent_minor, 0) as spent_minor,
        coalesce(spent.posting_count, 0) as posting_count
    from windows
    inner join budgets on budgets.budget_id = windows.budget_id
    left join spent
        on spent.budget_id = windows.budget_id
        and spent.window_start is not distinct from windows.window_start
    left join current_windows
        on current_windows.budget_id = windows.budget_id
        and current_windows.window_start is not distinct from windows.window_start
    left join limits
        on limits.budget_id = windows.budget_id
        and limits.window_start is not distinct from windows.window_start
        and limits.newest_first = 1
)

select
    windowed.*,
    limit_minor - spent_minor as remaining_minor,
    case when limit_minor = 0 then null else cast(spent_minor as double precision) / limit_minor end
        as utilization,
    spent_minor > limit_minor as is_exceeded
from windowed
