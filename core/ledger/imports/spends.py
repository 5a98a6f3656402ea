"""A spend the budgets refused, kept in the quarantine so it can be replayed (core.ledger.imports.replay).

A cost row of an import file is replayed from its file; a spend booked by code (the market
simulator's ad costs, core.simulator.environment) has no file, so its payload is the spend itself:
a JSON object with "object": "ventureloop.spend" and the TransactionRequest's fields. Replaying it
goes through the budgets again, under the same idempotency key, so it books at most once.
"""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.ledger.imports.booking import Candidate
from core.ledger.imports.detect import BadRow
from core.ledger.validation import Posting, TransactionRequest

OBJECT = "ventureloop.spend"
REFUSED = "refused by the budgets: {reason}"  # the reason an import stores for a refused cost row


def to_payload(request: TransactionRequest) -> str:
    """The spend as the quarantine keeps it (stable text: the same spend, the same payload)."""
    return json.dumps(
        {
            "object": OBJECT,
            "idempotency_key": request.idempotency_key,
            "kind": request.kind,
            "description": request.description,
            "occurred_at": request.occurred_at.isoformat(),
            "postings": [[p.account, p.currency, p.amount_minor] for p in request.postings],
            "experiment_id": request.experiment_id,
            "source": request.source,
            "external_ref": request.external_ref,
            "metadata": dict(request.metadata),
        },
        sort_keys=True,
        ensure_ascii=False,
    )


def request_from_object(obj: Mapping[str, Any]) -> TransactionRequest:
    try:
        occurred = datetime.fromisoformat(obj["occurred_at"])
        postings = [Posting(str(a), str(c), int(m)) for a, c, m in obj["postings"]]
        return TransactionRequest(
            idempotency_key=str(obj["idempotency_key"]),
            kind=str(obj["kind"]),
            description=str(obj["description"]),
            occurred_at=occurred,
            postings=postings,
            experiment_id=obj.get("experiment_id"),
            source=str(obj["source"]),
            external_ref=obj.get("external_ref"),
            metadata=dict(obj.get("metadata") or {}),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise BadRow(f"a quarantined spend lacks or garbles {error}: it cannot be replayed") from None


def candidate(origin: str, obj: Mapping[str, Any], payload: str) -> Candidate:
    try:
        return Candidate(origin, payload, request_from_object(obj))
    except BadRow as error:
        return Candidate(origin, payload, error=str(error))
