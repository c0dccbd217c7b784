"""Which messages a live socket treats as snapshots of the same thing (and drops if older)."""

from orchestration.consumers import _entity


def test_step_completes_of_different_jobs_and_steps_are_different_things():
    def done(job, step, attempt=1):
        return _entity({"type": "complete", "job_id": job, "step": step, "attempt": attempt})

    assert done(1, "demand") != done(2, "demand")  # two plans watched on one socket
    assert done(1, "demand") != done(1, "inventory")
    assert done(1, "demand") != done(1, "demand", attempt=2)
    assert done(1, "demand") == done(1, "demand")  # the same message twice: one is dropped


def test_batch_completes_are_keyed_by_batch():
    first = _entity({"type": "complete", "batch_id": 4, "job_id": None})
    assert first == _entity({"type": "complete", "batch_id": 4})
    assert first != _entity({"type": "complete", "batch_id": 5})
