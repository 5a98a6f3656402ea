"""Balances per account and currency from ledger.postings, in signed minor units (debit-normal accounts
are positive), optionally as of an instant: postings that occurred before it.
"""

from datetime import datetime
from typing import Any

import pandas as pd

from core.platform.warehouse import Warehouse


def balances(warehouse: Warehouse, *, as_of: datetime | None = None, prefix: str | None = None) -> pd.DataFrame:
    """Balance per account and currency (signed minor units: debit-normal accounts are positive)."""
    where, params = ["1 = 1"], []
    if as_of is not None:
        where.append("p.occurred_at < %s")
        params.append(as_of)
    if prefix is not None:
        where.append("(p.account_id = %s OR starts_with(p.account_id, %s))")
        params += [prefix, prefix + ":"]
    return warehouse.query(
        "SELECT p.account_id, a.account_type, p.currency, CAST(sum(p.amount_minor) AS BIGINT) AS balance_minor "
        "FROM ledger.postings p JOIN ledger.accounts a ON a.account_id = p.account_id "
        f"WHERE {' AND '.join(where)} GROUP BY p.account_id, a.account_type, p.currency "
        "ORDER BY p.account_id, p.currency",
        params,
    )


def balance(warehouse: Warehouse, account: str, currency: str, *, as_of: datetime | None = None) -> int:
    sql = (
        "SELECT CAST(coalesce(sum(amount_minor), 0) AS BIGINT) FROM ledger.postings "
        "WHERE account_id = %s AND currency = %s"
    )
    params: list[Any] = [account, currency]
    if as_of is not None:
        sql += " AND occurred_at < %s"
        params.append(as_of)
    return int(warehouse.scalar(sql, params))
