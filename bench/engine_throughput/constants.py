"""What every part of the throughput benchmark shares: its name, tenant, job kind and target."""

from __future__ import annotations

NAME = "engine_throughput"


SCHEMA = "bench"


# "noopmkt": no-op steps whose resource allows 64 at once (nothing external to protect).
MARKETPLACE, ACTION, STEPS_PER_JOB = "noopmkt", "noop5", 5


NOOP_FUNC = "bench.engine_throughput.noop.noop"


TARGET_RATIO = 3.0


MAX_PROFILE_JOBS = 60  # ~100 statements per job; Django keeps only the last 9000 captured


STATS_COLUMNS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


PROCRASTINATE_APP = "bench.engine_throughput.procrastinate_app.app"


RATE_PER_MINUTE = 60
