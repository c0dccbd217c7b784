"""Architecture: statuses are written in one place (DESIGN invariant 1).

Every job, task, run and batch status change goes through
``orchestration/engine/transitions.py`` (the guarded write checked against the table in
``orchestration/states.py``). This scans the project's source with ``ast`` and fails on
any other status write: ``.update(status=…)``, ``.create(status=…)`` and friends,
``Model(status=…)`` of an engine model, ``bulk_update(…, ["status"])``, and SQL text that
assigns ``status``. The runner's hand-written statements, which take their sources from
the transition table, are the documented exception, allowed here by name: a new exception
has to be added to ``ALLOWED_SQL`` on purpose.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestration", "tenants", "marketplaces", "config")
THE_ONE_PLACE = Path("orchestration/engine/transitions.py")
ENGINE_MODELS = {"Batch", "MarketplaceJob", "MarketplaceTask", "JobRun"}
WRITE_METHODS = {"update", "create", "get_or_create", "update_or_create", "bulk_update"}
# (file, module-level name) of SQL text allowed to set a status (docs/engine.md).
ALLOWED_SQL = {
    ("orchestration/engine/claims.py", "_START_RUNS"),  # claim: runs inserted, jobs → running
    ("orchestration/engine/advance.py", "_START_SQL"),  # first task → running
    ("orchestration/engine/advance.py", "_ADVANCE_BODY"),  # task → completed, next → running
    ("orchestration/engine/finish.py", "_FINISH_SQL"),  # run and job → completed
    ("orchestration/engine/advance.py", "_TASK_START_SET"),  # what every task start writes
}
_SQL_SET = re.compile(r"\bSET\b(.*?)(?:\bFROM\b|\bWHERE\b|\bRETURNING\b|;|$)", re.I | re.S)
_STATUS_ASSIGN = re.compile(r"(?:^|[\s,.])status\s*=", re.I)


def _sources() -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts or relative == THE_ONE_PLACE:
                continue
            files.append(relative)
    return files


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _mentions_status(node: ast.expr) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == "status" for n in ast.walk(node))


def _call_writes(call: ast.Call) -> str | None:
    name = _name(call.func)
    keywords = {k.arg for k in call.keywords}
    if name in WRITE_METHODS and isinstance(call.func, ast.Attribute):
        if "status" in keywords:
            return f".{name}(status=…)"
        if name == "bulk_update" and any(_mentions_status(a) for a in call.args[1:]):
            return ".bulk_update(…, ['status'])"
        defaults = [k.value for k in call.keywords if k.arg in ("defaults", "create_defaults")]
        if any(_mentions_status(d) for d in defaults):
            return f".{name}(defaults={{'status': …}})"
    if name in ENGINE_MODELS and "status" in keywords:
        return f"{name}(status=…)"
    return None


def _sql_sets_status(text: str) -> bool:
    return any(_STATUS_ASSIGN.search(m.group(1)) for m in _SQL_SET.finditer(text))


def _owner(tree: ast.Module) -> dict[int, str]:
    """id(node) → the module-level name it belongs to (assignment target or def name)."""
    owner: dict[int, str] = {}
    for top in tree.body:
        name = ""
        if isinstance(top, ast.Assign) and isinstance(top.targets[0], ast.Name):
            name = top.targets[0].id
        elif isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = top.name
        for node in ast.walk(top):
            owner[id(node)] = name
    return owner


def status_writes(path: Path, source: str | None = None) -> list[str]:
    """Every status write in one file outside the allowed places, as ``file:line what``."""
    text = (ROOT / path).read_text() if source is None else source
    tree = ast.parse(text)
    owner = _owner(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (what := _call_writes(node)):
            found.append(f"{path}:{node.lineno} {what}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _sql_sets_status(node.value)
            and (str(path), owner.get(id(node))) not in ALLOWED_SQL
        ):
            found.append(f"{path}:{node.lineno} SQL sets status in {owner.get(id(node))!r}")
    return found


def test_no_status_is_written_outside_the_transitions_module():
    found = [write for path in _sources() for write in status_writes(path)]
    assert found == [], (
        "status written outside orchestration/engine/transitions.py "
        "(use transitions.transition / transition_many):\n" + "\n".join(found)
    )


def test_the_allowed_sql_still_exists_and_is_the_only_sql_exception():
    for file, name in ALLOWED_SQL:
        tree = ast.parse((ROOT / file).read_text())
        names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}  # fmt: skip
        assert name in names, (file, name)


def test_the_scan_sees_each_kind_of_stray_write():
    stray = """
MarketplaceTask.objects.filter(job_id=1).update(status="cancelled")
Batch.objects.update_or_create(pk=1, defaults={"status": "running"})
JobRun.objects.bulk_update(runs, ["status"])
MarketplaceJob(status="queued", marketplace="x")
_SQL = "UPDATE {job} SET priority = 1, status = 'queued' WHERE id = %s"
"""
    found = status_writes(Path("orchestration/services/stray.py"), stray)
    assert len(found) == 5, found
    harmless = """
MarketplaceJob.objects.filter(status="queued").update(priority=1)
events.emit("job_status", status="queued", job_id=1)
HttpResponse(status=404)
_SQL = "UPDATE {run} SET heartbeat_at = now() WHERE id = %s AND status = 'running'"
"""
    assert status_writes(Path("orchestration/services/stray.py"), harmless) == []
