-- The seed's revenue_summary, column for column, now derived from the double-entry ledger.
-- "cents" are minor units of the reporting currency (var reporting_currency).
select
    experiment_id,
    revenue_minor as total_revenue_cents,
    cost_minor as total_cost_cents,
    profit_minor as net_profit_cents,
    transaction_count as event_count,
    last_event_at
from {{ ref('experiment_pnl') }}
