"""When a schedule runs: cron expressions (croniter) in a timezone, or every N minutes.

Pure functions (no ORM). Cron slots are computed in the schedule's timezone, so "0 6 * * *"
in Europe/Paris is 06:00 Paris time in summer and winter. Across DST: a slot in the hour
that does not exist (spring forward) fires once at the first instant after the gap; a
wall-clock time in the repeated hour (fall back) fires once, on its first pass.
"Every N minutes" slots are the multiples of N minutes since the Unix epoch (every 15 →
:00, :15, :30, :45), whatever the timezone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MAX_EVERY_MINUTES = 7 * 24 * 60
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimingError(ValueError):
    """A cron expression, interval or timezone that cannot be used (the message says why)."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimingError(
            f"unknown timezone {name!r} (use an IANA name such as Europe/Paris)"
        ) from exc


def check(*, cron: str, every_minutes: int | None, timezone: str) -> None:
    """Raise ``TimingError`` unless exactly one of cron / every_minutes is valid."""
    zone(timezone)
    cron = (cron or "").strip()
    if cron and every_minutes:
        raise TimingError("give a cron expression or 'every N minutes', not both")
    if not cron and not every_minutes:
        raise TimingError("give a cron expression or 'every N minutes'")
    if cron:
        if len(cron.split()) != 5:
            raise TimingError(
                f"bad cron expression {cron!r}: five fields expected (minute hour day month weekday)"
            )
        if not croniter.is_valid(cron):
            raise TimingError(f"bad cron expression {cron!r}")
    elif not 1 <= int(every_minutes or 0) <= MAX_EVERY_MINUTES:
        raise TimingError(f"every N minutes: N must be between 1 and {MAX_EVERY_MINUTES}")


def next_after(*, cron: str, every_minutes: int | None, timezone: str, after: datetime) -> datetime:
    """The first slot strictly after ``after`` (aware), in UTC."""
    check(cron=cron, every_minutes=every_minutes, timezone=timezone)
    if cron:
        local = after.astimezone(zone(timezone))
        it = croniter(cron.strip(), local)
        while True:
            slot = it.get_next(datetime)
            # Wall-clock time never runs backwards: in the repeated hour of a fall-back
            # night, a slot already passed at that wall-clock time (first pass) is not
            # fired again.
            if slot.replace(tzinfo=None) > local.replace(tzinfo=None):
                return slot.astimezone(UTC)
    step = timedelta(minutes=int(every_minutes or 0))
    passed = (after - _EPOCH) // step
    return _EPOCH + (passed + 1) * step


def upcoming(
    *, cron: str, every_minutes: int | None, timezone: str, after: datetime, count: int = 5
) -> list[datetime]:
    """The next ``count`` slots after ``after`` (the admin's preview)."""
    slots: list[datetime] = []
    at = after
    for _ in range(count):
        at = next_after(cron=cron, every_minutes=every_minutes, timezone=timezone, after=at)
        slots.append(at)
    return slots
