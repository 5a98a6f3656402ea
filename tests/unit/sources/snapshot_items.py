"""What the connector tests share: every item of a replayed fetch, normalized or refused."""

from core.discovery.sources.base import BadRecord, Normalized, Page, Source


def normalized_and_bad(source: Source, pages: list[Page]) -> tuple[dict[str, Normalized], list[tuple[str, str]]]:
    """The items that normalize, by external id, and (external id, reason) for those that don't."""
    good, bad = {}, []
    for page in pages:
        for item in page.items:
            try:
                good[item.external_id] = source.normalize(item.payload)
            except BadRecord as error:
                bad.append((item.external_id, str(error)))
    return good, bad


def bad_reasons(source: Source, pages: list[Page]) -> list[str]:
    return [reason for _, reason in normalized_and_bad(source, pages)[1]]
