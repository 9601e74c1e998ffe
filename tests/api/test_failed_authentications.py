"""The throttle on failed authentications: a sliding window per client address."""

from __future__ import annotations

from api.deps import FailedAuthentications


def test_a_client_is_refused_past_the_limit_until_its_oldest_failure_leaves_the_window():
    failures = FailedAuthentications(limit=3, window_s=60.0)
    for second in (0.0, 10.0, 20.0):
        assert failures.retry_after_s("10.0.0.1", second) is None
        failures.record("10.0.0.1", second)
    assert failures.retry_after_s("10.0.0.1", 30.0) == 30.0  # the failure at 0 s leaves at 60 s
    assert failures.retry_after_s("10.0.0.2", 30.0) is None  # another client is not affected
    assert failures.retry_after_s("10.0.0.1", 60.0) is None
    failures.record("10.0.0.1", 61.0)
    assert failures.retry_after_s("10.0.0.1", 62.0) == 8.0  # 10, 20 and 61 in the window
    assert failures.retry_after_s("10.0.0.1", 200.0) is None
