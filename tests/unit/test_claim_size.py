from django.test import override_settings

from orchestration.engine.dispatch import claim_size


@override_settings(ORCHESTRATION={"CLAIM_BATCH": 32})
def test_one_job_while_the_pace_is_unknown():
    assert claim_size(None, 2.0) == 1
    assert claim_size(0.0, 2.0) == 1


@override_settings(ORCHESTRATION={"CLAIM_BATCH": 32})
def test_slow_jobs_are_claimed_one_at_a_time():
    # 1.5 s per job, 2 s of turn left: claiming two would run past the turn by a job.
    assert claim_size(1.5, 2.0) == 1
    assert claim_size(30.0, 2.0) == 1
    assert claim_size(1.5, -0.1) == 1  # the turn already ended: still progress, one job


@override_settings(ORCHESTRATION={"CLAIM_BATCH": 32})
def test_quick_jobs_fill_the_rest_of_the_turn_up_to_the_cap():
    assert claim_size(0.1, 0.95) == 9
    assert claim_size(0.004, 2.0) == 32
