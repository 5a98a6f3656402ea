import pytest

from core.discovery.sources.base import BadRecord, timestamp


@pytest.mark.parametrize("value", [2**62, 2**70, -(2**70), 1e300])
def test_epoch_seconds_past_the_platform_range_are_bad_records_not_crashes(value):
    with pytest.raises(BadRecord, match="timestamp out of range in 'created_at_i'"):
        timestamp(value, "created_at_i")
