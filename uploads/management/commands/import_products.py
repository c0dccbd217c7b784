"""Import a CSV or JSON Lines file of products into a tenant, through the same services the
API uses: the file is uploaded in parts (checksums and all), verified, then imported by a
job on the engine (workers run it). ``--wait`` follows the job with a progress bar."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from django.core.management.base import CommandError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from orchestration.management.base import TenantCommand
from orchestration.models import MarketplaceJob
from orchestration.states import JOB_TERMINAL
from uploads import selectors, services, storage

POLL_SECONDS = 0.5


def _sha256(path: Path, offset: int = 0, length: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        remaining = length if length is not None else path.stat().st_size - offset
        while remaining > 0:
            chunk = handle.read(min(storage.CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


class Command(TenantCommand):
    help = (
        "Import products from a CSV or JSON Lines file (uploaded in parts, verified, then "
        "imported by a job); optionally publish them to marketplaces afterwards."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--file", required=True, help="Path of the CSV or JSON Lines file")
        parser.add_argument(
            "--marketplace", action="append", default=[],
            help="Publish the imported products there (repeat for several)",
        )  # fmt: skip
        parser.add_argument(
            "--wait", action="store_true",
            help="Follow the import with a progress bar; exit 0 completed, 2 failed, "
            "3 cancelled, 4 still running after --timeout",
        )  # fmt: skip
        parser.add_argument("--timeout", type=float, help="With --wait: give up after N seconds")

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        size = path.stat().st_size
        if size == 0:
            raise CommandError(f"{path} is empty")
        show = not options["json"]
        console = Console(file=self.stderr._out, stderr=True)  # type: ignore[arg-type]
        try:
            services.marketplaces_check(options["marketplace"])  # before any upload
            upload = self._upload(path, size, show=show, console=console)
            upload = services.upload_start_import(
                upload_id=upload.pk,
                marketplaces=options["marketplace"],
                created_by="command",
                door="command",
            )
        except services.UploadError as exc:
            raise CommandError(exc.message) from None
        job_id = upload.import_job_id
        assert job_id is not None
        if options["wait"]:
            self._follow(job_id, show=show, console=console, timeout=options["timeout"])
        report = selectors.import_report(selectors.upload_get(upload.pk))
        self.emit(options, report, self._describe(report))
        status = report["import_status"]
        if options["wait"] and status != "completed":
            codes = {"failed": 2, "cancelled": 3}
            code = codes.get(status, 4)
            raise CommandError(
                f"import job {job_id} ended {status}: {report['import_error'] or ''}".rstrip(": ")
                if code < 4
                else f"import job {job_id} still {status} after {options['timeout']} s",
                returncode=code,
            )

    def _upload(self, path: Path, size: int, *, show: bool, console: Console):
        upload = services.upload_create(
            filename=path.name, size=size, sha256=_sha256(path), created_by="cli"
        )
        columns = (TextColumn("upload"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=console, disable=not show) as bar:
            task = bar.add_task("upload", total=size)
            with open(path, "rb") as handle:
                for n in range(1, upload.part_count + 1):
                    offset, length = (n - 1) * upload.part_size, upload.part_length(n)
                    checksum = _sha256(path, offset, length)
                    handle.seek(offset)
                    services.upload_put_part(
                        upload_id=upload.pk, index=n, stream=handle, length=length,
                        sha256=checksum,
                    )  # fmt: skip
                    bar.advance(task, length)
        return services.upload_complete(upload_id=upload.pk)

    def _follow(self, job_id: int, *, show: bool, console: Console, timeout: float | None):
        deadline = time.monotonic() + timeout if timeout else None
        columns = (TextColumn("import {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("steps"), TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=console, disable=not show) as bar:
            task = bar.add_task("queued", total=3)
            while True:
                job = MarketplaceJob.objects.get(pk=job_id)
                tasks = list(job.tasks.values_list("step_type", "status"))
                done = sum(1 for _step, status in tasks if status == "completed")
                running = next((s for s, status in tasks if status == "running"), "")
                label = f"{job.status}{' · ' + running if running else ''}"
                bar.update(task, completed=done, total=len(tasks), description=label)
                if job.status in JOB_TERMINAL:
                    return
                if deadline is not None and time.monotonic() > deadline:
                    return
                time.sleep(POLL_SECONDS)

    @staticmethod
    def _describe(report: dict) -> str:
        lines = [f"upload {report['upload_id']}: import job {report['import_job_id']} "
                 f"{report['import_status']}"]  # fmt: skip
        if report["rows_read"] is not None:
            lines.append(f"rows read {report['rows_read']}, valid {report['valid']}, "
                         f"rejected {report['rejected']}")  # fmt: skip
        if report["created"] is not None:
            lines.append(f"products created {report['created']}, updated {report['updated']}, "
                         f"unchanged {report['unchanged']}")  # fmt: skip
        for error in report["errors"][:10]:
            lines.append(f"  line {error['line']} ({error['sku'] or 'no sku'}): "
                         f"{'; '.join(error['errors'])}")  # fmt: skip
        if report["publish_batch_id"]:
            lines.append(f"publish batch {report['publish_batch_id']}: "
                         f"{report['publish_jobs']} job(s)")  # fmt: skip
        if report["import_error"]:
            lines.append(f"error: {report['import_error']}")
        return "\n".join(lines)
