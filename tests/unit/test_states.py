"""The transition table, exhaustively: every pair of every kind is either allowed or raises."""

import itertools

import pytest

from orchestration import states
from orchestration.states import BatchStatus, JobStatus, RunStatus, TaskStatus

ENUMS = {"job": JobStatus, "task": TaskStatus, "run": RunStatus, "batch": BatchStatus}

EXPECTED_ALLOWED = {
    "job": {
        ("pending", "queued"), ("pending", "cancelled"), ("pending", "skipped"),
        ("queued", "running"), ("queued", "cancelled"), ("queued", "skipped"), ("queued", "pending"),
        ("running", "completed"), ("running", "failed"), ("running", "retrying"), ("running", "cancelled"),
        ("running", "queued"),
        ("retrying", "running"), ("retrying", "cancelled"), ("retrying", "queued"),
        ("completed", "queued"),
        ("failed", "queued"), ("failed", "skipped"),
        ("cancelled", "queued"), ("cancelled", "pending"),
        ("skipped", "queued"), ("skipped", "pending"), ("skipped", "cancelled"),
    },
    "task": {
        ("pending", "running"), ("pending", "cancelled"),
        ("running", "completed"), ("running", "failed"), ("running", "cancelled"),
        ("completed", "pending"),
        ("failed", "running"), ("failed", "pending"), ("failed", "cancelled"),
        ("cancelled", "pending"),
    },
    "run": {("running", "completed"), ("running", "failed"), ("running", "cancelled")},
    "batch": {
        ("pending", t) for t in ("running", "completed", "partial", "failed", "cancelled")
    } | {("running", t) for t in ("completed", "partial", "failed", "cancelled")}
    | {(s, "running") for s in ("completed", "partial", "failed", "cancelled")},
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(ENUMS))
def test_every_pair_is_allowed_exactly_when_listed(kind):
    members = [m.value for m in ENUMS[kind]]
    for current, target in itertools.product(members, members):
        expected = (current, target) in EXPECTED_ALLOWED[kind]
        assert states.allowed(kind, current, target) is expected, (kind, current, target)
        if expected:
            states.check(kind, 1, current, target)
        else:
            with pytest.raises(states.ForbiddenTransition) as excinfo:
                states.check(kind, 1, current, target)
            assert f"{current} → {target}" in str(excinfo.value)


@pytest.mark.parametrize("kind", sorted(ENUMS))
def test_sources_are_the_inverse_of_the_table(kind):
    for target in ENUMS[kind]:
        expected = {c for c, t in EXPECTED_ALLOWED[kind] if t == target.value}
        assert states.sources(kind, target.value) == expected


def test_unknown_status_is_never_allowed():
    assert not states.allowed("job", "exploded", "queued")
    assert not states.allowed("job", "queued", "exploded")


def test_completed_runs_and_tasks_are_final_except_explicit_resets():
    assert states.RUN_TRANSITIONS[RunStatus.COMPLETED] == frozenset()
    assert states.TASK_TRANSITIONS[TaskStatus.COMPLETED] == {TaskStatus.PENDING}
