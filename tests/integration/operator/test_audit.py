"""The audit trail: record() validates its door, entries are found by object, never
rewritten (the database refuses an UPDATE), and the Activity admin is read-only."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from audit import selectors, services
from audit.models import AuditEntry
from tests.factories import UserFactory


def test_record_and_find_by_object(tenant_a):
    entry = services.record(
        "staff", "admin", "job.retry", [("job", 12), ("job", 13)], details={"why": "x"}
    )
    services.record("bot", "api:ci-token", "job.cancel", [("job", 14)])
    services.record("ops", "command", "batch.cancel", [("batch", 12)])
    assert entry.targets == [["job", "12"], ["job", "13"]]
    assert entry.object_count == 2
    assert [e.action for e in selectors.entries_for("job", 12)] == ["job.retry"]
    assert [e.door for e in selectors.entries_for("job", "14")] == ["api:ci-token"]
    # a batch 12 is not job 12
    assert [e.action for e in selectors.entries_for("batch", 12)] == ["batch.cancel"]


@pytest.mark.parametrize(
    ("actor", "door", "action", "message"),
    [
        ("staff", "web", "job.retry", "unknown door"),
        ("staff", "api:", "job.retry", "unknown door"),
        ("", "admin", "job.retry", "actor"),
        ("staff", "admin", " ", "action"),
    ],
)
def test_bad_entries_are_refused(tenant_a, actor, door, action, message):
    with pytest.raises(services.AuditError, match=message):
        services.record(actor, door, action, [("job", 1)])
    assert not AuditEntry.objects.exists()


def test_many_objects_keep_their_count(tenant_a):
    entry = services.record("staff", "dashboard", "job.retry", (("job", i) for i in range(2500)))
    assert len(entry.targets) == services.MAX_OBJECTS
    assert entry.object_count == 2500


def test_entries_cannot_be_rewritten(tenant_a):
    entry = services.record("staff", "admin", "job.retry", [("job", 1)])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(actor="someone else")
    entry.refresh_from_db()
    assert entry.actor == "staff"


def test_activity_admin_is_read_only_and_filters(tenant_a, client):
    user = UserFactory(username="auditor")
    client.force_login(user)
    services.record("staff", "admin", "job.retry", [("job", 7)])
    services.record("robot", "api:nightly", "job.cancel", [("job", 8)])
    host = {"HTTP_HOST": "alpha.localhost"}
    page = client.get("/admin/audit/auditentry/", **host)
    assert page.status_code == 200
    assert b"robot" in page.content and b"staff" in page.content

    def actors(query: str) -> list[str]:
        response = client.get(f"/admin/audit/auditentry/?{query}", **host)
        assert response.status_code == 200
        return [e.actor for e in response.context["cl"].result_list]

    assert actors("door=api") == ["robot"]
    assert actors("door=admin") == ["staff"]
    assert actors("object=job:7") == ["staff"]
    assert actors("object=garbage") == []
    entry = AuditEntry.objects.get(actor="staff")
    assert client.get("/admin/audit/auditentry/add/", **host).status_code == 403
    change = client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"actor": "x"}, **host)
    assert change.status_code in (200, 403)
    assert client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", **host).status_code == 403
    entry.refresh_from_db()
    assert entry.actor == "staff"
