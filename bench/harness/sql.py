"""The statements a run sent, by kind (``SELECT orchestration_job FOR UPDATE``, ``COMMIT``)."""

from __future__ import annotations

import re

_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?([\w.]+)"?', re.IGNORECASE)


def categorize(sql: str) -> str:
    """The verb and the table of one statement; transaction control and SET by themselves."""
    text = sql.strip()
    verb = text.split(None, 1)[0].upper() if text else "?"
    if verb in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK"):
        return f"{verb} (savepoint)" if "SAVEPOINT" in text.upper() else verb
    if verb == "SET":
        return "SET search_path" if "search_path" in text.lower() else "SET"
    match = _TABLE.search(text)
    table = match.group(1).removeprefix("public.") if match else "?"
    lock = " FOR UPDATE" if "FOR UPDATE" in text.upper() else ""
    return f"{verb} {table}{lock}"
