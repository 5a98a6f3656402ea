"""The double-entry ledger and what writes to it. Import the module you need: this file imports
nothing, so that importing one of them stays cheap.

    validation          Posting, TransactionRequest, prepare, account_type, content_hash; the ledger's errors
    booking             book, book_many, book_prepared, reverse, get_transaction: idempotent, append-only
    holds               hold, hold_many, post_hold, void_hold, expire_holds, pending_holds
    balances            balances, balance: per account and currency, optionally as of an instant
    verify              verify: the audit chain and every ledger invariant, read-only
    audit               the hash-chained audit log and write_transaction, which every audited write uses
    budgets             budgets and spend checked against them atomically; budget_config loads them from YAML
    fraud, review       fraud rules over incoming revenue; listing, releasing and rejecting the holds they make
    imports             Stripe and generic CSV payment imports, with quarantine and fraud review
    money, tax, fx      integer minor units, the tax hook, ECB rates and exact conversion
    simulated_payments  the Stripe balance transaction shape and fee the market simulator makes payments with

See docs/ledger.md for the chart of accounts and the conventions.
"""
