"""The engine core: claim, execute, finish, recover, dispatch.

Imports flow one way, from the top of this list down (``make lint`` checks it with
import-linter; docs/architecture.md):

- ``dispatch``: drains: pick the tenant whose turn it is, claim and run its jobs, deliver
  its webhooks, hand back what a turn could not finish.
- ``recovery``: runs no worker is running any more (lost leases, dead workers), the sweep.
- ``execute``: run claimed jobs step by step.
- ``finish``: end a run (completed, cancelled, failed) and apply the retry policy.
- ``advance``: a running job's fenced step writes.
- ``claims`` and ``moves``: which jobs may start now and claiming them; the job moves the
  services share with the engine (enqueue, cancel, stop a sequential group).
- ``counters``: batch counters and the batch status they derive.
- ``marks``: the public queue index of which tenants have work.
- ``slots``: drain slots and worker clusters' progress.
- ``session``, ``transitions``, ``retry``, ``executor``: the worker's database session,
  the one guarded status write, the backoff policy, the step thread pool.

The doors (admin, views, API, commands, q2 tasks, consumers) change state through
``orchestration.services``, which call down into these modules.
"""
