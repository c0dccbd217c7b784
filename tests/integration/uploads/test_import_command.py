"""manage.py import_products: the same services as the API; bad input exits non-zero with a
message and leaves nothing behind."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from marketplaces.models import Product
from orchestration.services import job_execute_now
from tests.integration.uploads.support import products_csv
from uploads.models import Upload


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_products", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "catalogue.csv"
    path.write_bytes(products_csv(25, prefix="CLI", bad_every=10))
    return path


def test_the_command_uploads_in_parts_and_starts_the_import(tx_tenant_a, uploads_root, csv_file):
    out, _err = _run("--tenant", "test_alpha", "--file", str(csv_file), "--json")
    report = json.loads(out)
    upload = Upload.objects.get(pk=report["upload_id"])
    assert (upload.state, upload.part_count) == ("completed", upload.size // 1024 + 1)
    assert upload.created_by == "cli"
    assert report["import_status"] == "queued"
    with override_settings(ORCHESTRATION={"CANCEL_POLL_SECONDS": 0.02}):
        assert job_execute_now(job_id=report["import_job_id"]) == "completed"
    assert Product.objects.filter(sku__startswith="CLI-").count() == 23


def test_wait_reports_a_job_still_running_with_exit_code_4(tx_tenant_a, uploads_root, csv_file):
    with pytest.raises(CommandError) as caught:
        _run("--tenant", "test_alpha", "--file", str(csv_file), "--wait", "--timeout", "0.3",
             "--json")  # fmt: skip
    assert caught.value.returncode == 4
    assert "still queued" in str(caught.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nobody", "--file", "{file}"], "unknown tenant 'nobody'"),
        (["--tenant", "test_alpha", "--file", "/no/such.csv"], "no such file"),
        (
            ["--tenant", "test_alpha", "--file", "{file}", "--marketplace", "amazon"],
            "unknown marketplace(s): amazon",
        ),
    ],
)
def test_bad_input_exits_with_a_message_and_uploads_nothing(
    tenant_a, uploads_root, csv_file, args, message
):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run(*[a.replace("{file}", str(csv_file)) for a in args])
    assert Upload.objects.count() == 0
    assert not uploads_root.exists() or not any(uploads_root.rglob("data"))
