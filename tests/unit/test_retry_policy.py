import random

from django.test import override_settings

from orchestration.engine.retry import backoff_seconds


@override_settings(ORCHESTRATION={"RETRY_BASE_SECONDS": 2, "RETRY_MAX_SECONDS": 60})
def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    rng = random.Random(1)
    for n, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (10, 60)]:
        delays = [backoff_seconds(n, rng=rng) for _ in range(50)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays), (n, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered


@override_settings(ORCHESTRATION={"RETRY_BASE_SECONDS": 2, "RETRY_MAX_SECONDS": 60})
def test_retry_after_is_a_floor():
    assert backoff_seconds(1, retry_after=30, rng=random.Random(0)) >= 30
    assert backoff_seconds(1, retry_after=10_000, rng=random.Random(0)) == 60
