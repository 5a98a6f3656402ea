select
    account_id,
    {{ account_type('account_id') }} as account_type,
    account_type as declared_account_type,
    opened_at
from {{ source('ledger', 'accounts') }}
