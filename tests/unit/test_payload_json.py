"""payload_json must be json.loads exactly: same values and types, same errors (quarantine reasons)."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.discovery.opportunities import payload_json

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _outcome(parse, text):
    try:
        return "value", _canonical(parse(text))
    except json.JSONDecodeError as error:
        return type(error).__name__, str(error)


def _canonical(value):
    """The value with its types spelled out, so 1 != 1.0 != True and NaN equals NaN."""
    if isinstance(value, dict):
        return ("dict", [(k, _canonical(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_canonical(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, repr(value))


def _same_as_json(text):
    assert _outcome(payload_json, text) == _outcome(json.loads, text)


@settings(max_examples=5 * settings().max_examples)
@given(_values, st.booleans())
def test_serialized_values_parse_as_json_parses_them(value, ensure_ascii):
    _same_as_json(json.dumps(value, ensure_ascii=ensure_ascii))


@settings(max_examples=5 * settings().max_examples)
@given(_values, st.integers(min_value=0, max_value=200), st.text(max_size=3))
def test_damaged_texts_fail_or_parse_as_json_does(value, position, junk):
    text = json.dumps(value)
    _same_as_json(text[:position] + junk + text[position:])


@pytest.mark.parametrize(
    "text",
    [
        '{"id": 18446744073709551616}',
        '{"id": -9223372036854775809}',
        '{"id": 9223372036854775807}',
        '{"n": 1.2345678901234567890123}',
        '{"a": NaN}',
        '{"a": -Infinity}',
        '{"a": 1e400}',
        '"\\ud800"',
        '\ufeff{"a": 1}',
        '{"a": 1, "a": 2}',
        '{"a": "\t"}',
        "[1,]",
        "01",
        "",
        '{"a": "\ud800"}',
        '{"s": "\\u0000"}',
    ],
)
def test_texts_where_orjson_differs_from_json(text):
    _same_as_json(text)


def test_a_record_nested_past_json_s_depth_limit_is_quarantined_not_raised():
    import pandas as pd

    from core.discovery.opportunities import normalize_records
    from core.discovery.sources.hackernews import HackerNews

    good = {"objectID": "1", "title": "Show HN: a thing", "url": "https://example.com/", "created_at_i": 1_700_000_000}
    deep = '{"objectID": "2", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    records = pd.DataFrame(
        {
            "record_id": ["r1", "r2"],
            "response_id": ["p", "p"],
            "source": "hackernews",
            "external_id": ["1", "2"],
            "payload": [json.dumps(good), deep],
            "fetched_at": pd.Timestamp("2026-01-01", tz="UTC"),
        }
    )
    frame, problems = normalize_records(HackerNews({}), records)
    assert frame["external_id"].tolist() == ["1"]
    [problem] = problems
    assert problem.origin == "raw.records/r2 (hackernews 2)"
    assert "nested too deeply" in problem.reason and problem.payload == deep
