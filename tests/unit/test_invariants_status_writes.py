"""Architecture: one writer per transition (invariant 1; issue 10) — the writes
``tests/unit/test_status_writes.py`` does not look for.

That scan catches ``.update(status=…)``, ``.create(status=…)``, ``Model(status=…)`` of an
engine model, ``bulk_update(…, ["status"])`` and SQL ``SET status``. This one adds what
would slip past it:

- ``obj.status = …`` then ``obj.save()`` (or ``setattr(obj, "status", …)``, ``+=``, or
  objects bulk-created/updated in the same function; an assignment alone only mirrors in
  memory what a transition wrote, as ``services/batches.py`` does);
- ``save(update_fields=[…"status"…])`` and ``bulk_create(…, update_fields=["status"])``;
- ``status`` passed through a dict: ``.update(**{"status": …})``, ``Model(**{"status": …})``;
- a model built through an alias (``self.model(status=…)``, ``model(status=…)``);
- SQL ``INSERT INTO … (… status …)``.

The marketplace sandbox (``marketplaces/sandbox``, a standalone ASGI app with no Django
models) keeps its own fake-marketplace objects with a ``status`` and is left out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.unit import test_status_writes as first_scan
from tests.unit.test_status_writes import ROOT, THE_ONE_PLACE, _mentions_status, _name

NOT_DJANGO = (Path("marketplaces/sandbox"),)
ENGINE_MODELS = {"Batch", "MarketplaceJob", "MarketplaceTask", "JobRun"}
MODEL_ALIASES = {"model", "Model"}  # ``self.model(...)``, ``queryset.model(...)``, ``model(...)``
WRITE_METHODS = {"update", "create", "get_or_create", "update_or_create", "bulk_update",
                 "bulk_create"}  # fmt: skip
_SQL_INSERT = re.compile(r"\bINSERT\s+INTO\s+\S+\s*(?:AS\s+\w+\s*)?\(([^)]*)\)", re.I | re.S)


def _sources() -> list[Path]:
    """The first scan's files, less the sandbox (it has no Django models)."""
    return [
        path
        for path in first_scan._sources()
        if not any(path.is_relative_to(skip) for skip in NOT_DJANGO)
    ]


def _splat_status(call: ast.Call) -> bool:
    """``**{"status": …}`` / ``**dict(status=…)`` among the call's keywords."""
    for keyword in call.keywords:
        if keyword.arg is not None:
            continue
        value = keyword.value
        if isinstance(value, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value == "status" for k in value.keys
        ):
            return True
        if (
            isinstance(value, ast.Call)
            and _name(value.func) == "dict"
            and any(k.arg == "status" for k in value.keywords)
        ):
            return True
    return False


def _call_writes(call: ast.Call) -> str | None:
    name = _name(call.func)
    keywords = {k.arg for k in call.keywords}
    if name in {"save", "bulk_create", "update_or_create"} and isinstance(call.func, ast.Attribute):
        fields = [k.value for k in call.keywords if k.arg in ("update_fields",)]
        if any(_mentions_status(f) for f in fields):
            return f".{name}(update_fields=[…'status'…])"
    if name in WRITE_METHODS and isinstance(call.func, ast.Attribute) and _splat_status(call):
        return f'.{name}(**{{"status": …}})'
    if name in ENGINE_MODELS and _splat_status(call):
        return f'{name}(**{{"status": …}})'
    if name in MODEL_ALIASES and ("status" in keywords or _splat_status(call)):
        return f"{name}(status=…)"
    return None


def _status_targets(node: ast.AST) -> list[ast.Attribute]:
    """``X.status`` targets assigned by ``node`` (``=``, ``+=``, annotated, in tuples)."""
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    found = []
    while targets:
        target = targets.pop()
        if isinstance(target, (ast.Tuple, ast.List)):
            targets.extend(target.elts)
        elif isinstance(target, ast.Attribute) and target.attr == "status":
            found.append(target)
    return found


def _saves(call: ast.Call) -> str | None:
    """The object a ``X.save(...)`` call saves with its status (no ``update_fields``, or
    one naming ``status``); None otherwise."""
    if _name(call.func) != "save" or not isinstance(call.func, ast.Attribute):
        return None
    fields = [k.value for k in call.keywords if k.arg == "update_fields"]
    if fields and not any(_mentions_status(f) for f in fields):
        return None
    return ast.unparse(call.func.value)


def _assigned_then_saved(tree: ast.Module) -> list[int]:
    """Lines of ``X.status = …`` (or ``setattr(X, "status", …)``) in a function that also
    saves ``X`` with its status, or bulk-creates/updates objects: the status reaches the
    database. An assignment alone only mirrors in memory what a transition wrote."""
    lines: set[int] = set()
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for scope in [tree, *scopes]:
        assigned: dict[str, list[int]] = {}
        saved: set[str] = set()
        bulk = False
        for node in ast.walk(scope):
            for target in _status_targets(node):
                assigned.setdefault(ast.unparse(target.value), []).append(node.lineno)
            if isinstance(node, ast.Call):
                if _name(node.func) == "setattr" and len(node.args) >= 2:
                    attr = node.args[1]
                    if isinstance(attr, ast.Constant) and attr.value == "status":
                        assigned.setdefault(ast.unparse(node.args[0]), []).append(node.lineno)
                if (obj := _saves(node)) is not None:
                    saved.add(obj)
                bulk = bulk or _name(node.func) in ("bulk_create", "bulk_update")
        for obj, at in assigned.items():
            if obj in saved or bulk:
                lines.update(at)
    return sorted(lines)


def _sql_inserts_status(text: str) -> bool:
    return any(
        re.search(r"(?:^|[\s,])status(?:$|[\s,])", m.group(1), re.I)
        for m in _SQL_INSERT.finditer(text)
    )


def more_status_writes(path: Path, source: str | None = None) -> list[str]:
    """Status writes of the kinds listed above in one file, as ``file:line what``."""
    text = (ROOT / path).read_text() if source is None else source
    tree = ast.parse(text)
    found = [f"{path}:{line} <obj>.status = … then saved" for line in _assigned_then_saved(tree)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (what := _call_writes(node)):
            found.append(f"{path}:{node.lineno} {what}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _sql_inserts_status(node.value)
        ):
            found.append(f"{path}:{node.lineno} SQL inserts a status")
    return found


def test_no_status_is_assigned_saved_splatted_or_inserted_outside_the_transitions_module():
    found = [write for path in _sources() for write in more_status_writes(path)]
    assert found == [], (
        "status written outside orchestration/engine/transitions.py "
        "(use transitions.transition / transition_many):\n" + "\n".join(found)
    )


def test_the_scan_sees_each_kind_it_adds():
    stray = """
job.status = "queued"
job.save()
def fail(run):
    run.status, run.error = "failed", "x"
    run.save(update_fields=["status", "error"])
def cancel(task):
    setattr(task, "status", "cancelled")
    task.save()
def many(jobs):
    for job in jobs:
        job.status = "queued"
    MarketplaceJob.objects.bulk_create(jobs)
batch.save(update_fields=["status", "updated_at"])
MarketplaceJob.objects.bulk_create(jobs, update_conflicts=True, update_fields=["status"])
MarketplaceTask.objects.filter(job_id=1).update(**{"status": "cancelled"})
JobRun.objects.create(**dict(status="running", job_id=1))
MarketplaceJob(**{"status": "queued"})
self.model(status="running")
_SQL = "INSERT INTO {job} (id, status, priority) VALUES (%s, 'queued', 0)"
"""
    found = more_status_writes(Path("orchestration/services/stray.py"), stray)
    assert len(found) == 12, "\n".join(found)
    harmless = """
job.priority = 3
job.save(update_fields=["priority"])
def mirror(batch, target):
    transitions.transition(Batch, batch.pk, target)
    batch.status = target  # in memory only: what the transition wrote
def stale(job):
    job.status = "x"
    job.save(update_fields=["priority"])
response.status_code = 404
setattr(job, "priority", 1)
MarketplaceJob.objects.filter(**{"status": "queued"}).update(priority=1)
events.emit("job_status", status="queued", job_id=1)
_SQL = "INSERT INTO {tq} AS q (schema_name, ready_at) VALUES (%s, now())"
"""
    assert more_status_writes(Path("orchestration/services/stray.py"), harmless) == []


def test_the_scan_reads_the_engine_and_leaves_only_the_sandbox_out():
    sources = set(_sources())
    assert Path("orchestration/engine/finish.py") in sources
    assert Path("orchestration/admin/jobs.py") in sources
    assert THE_ONE_PLACE not in sources
    assert not [p for p in sources if p.is_relative_to(Path("marketplaces/sandbox"))]
