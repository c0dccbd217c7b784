"""Chunked uploads and the product import (issue 12).

1. **Upload throughput**: a file of ``--bytes`` (default 2 GB; 200 MB under ``CI=true``;
   ``UPLOAD_BENCH_BYTES`` asks for more, e.g. 10 GB) sent through the real API
   (``POST /api/uploads``, ``PUT …/parts/{n}`` of 8 MiB with their SHA-256, ``POST
   …/complete``, which re-reads the file to verify it) to a real ``uvicorn`` (``DEBUG=0``),
   ``--concurrency`` parts in flight. Against ``dd`` copying the same bytes to the same
   disk in the same run (``conv=fdatasync``; uploads fdatasync each part). Figures:
   MB/s both ways and their ratio (target ≥ 50 %), the server's peak RSS (target ≤ 150
   MB, sampled every 0.1 s with psutil).
2. **Import**: a CSV of ``--rows`` (100,000; 20,000 under ``CI=true``) products uploaded
   the same way, imported by a real ``qcluster`` (1 worker): rows/s from the job's start to
   its end (validate, upsert, no publish batch), and the worker's peak RSS.

The file's bytes are generated (a random 8 MiB block, each part stamped with its number)
and hashed by the client as they are sent. Nothing here asserts on timings.

    .venv/bin/python -m bench.upload [--bytes N] [--rows N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import harness

NAME = "upload"
SCHEMA = "bench"
DOMAIN = "bench.localhost"
PART = 8 * 1024 * 1024
MB = 1_000_000


def _default_bytes() -> int:
    if os.environ.get("UPLOAD_BENCH_BYTES"):
        return int(os.environ["UPLOAD_BENCH_BYTES"])
    return 200 * MB if os.environ.get("CI") == "true" else 2_000 * MB


class PeakRss:
    """Peak resident set size of a process and its children, sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.1):
        import psutil

        self.process = psutil.Process(pid)
        self.every = every
        self.peak = 0  # the process and its children together
        self.peak_one = 0  # the largest single process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                sizes = [p.memory_info().rss for p in procs]
                self.peak = max(self.peak, sum(sizes))
                self.peak_one = max(self.peak_one, *sizes)
            except psutil.Error:
                pass
            time.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def mb(self) -> float:
        return round(self.peak / MB, 1)

    @property
    def one_mb(self) -> float:
        return round(self.peak_one / MB, 1)


def _part_bytes(block: bytes, n: int, length: int) -> bytes:
    stamp = n.to_bytes(8, "big")
    return (stamp + block[8:])[:length]


def _upload_generated(http, size: int, *, concurrency: int) -> dict[str, Any]:
    block = os.urandom(PART)
    parts = (size + PART - 1) // PART
    lengths = [min(PART, size - (n - 1) * PART) for n in range(1, parts + 1)]
    whole = hashlib.sha256()
    for n, length in enumerate(lengths, start=1):
        whole.update(_part_bytes(block, n, length))
    started = time.perf_counter()
    created = http.post(
        "/api/uploads",
        json={"filename": "bench.bin", "size": size, "sha256": whole.hexdigest(),
              "part_size": PART},
    )  # fmt: skip
    if created.status_code != 201:
        raise harness.BenchError(f"create: {created.status_code} {created.text}")
    uid = created.json()["upload_id"]

    def send(n: int) -> None:
        data = _part_bytes(block, n, lengths[n - 1])
        response = http.put(
            f"/api/uploads/{uid}/parts/{n}",
            content=data,
            headers={"X-Part-SHA256": hashlib.sha256(data).hexdigest(),
                     "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        if response.status_code not in (200, 201):
            raise harness.BenchError(f"part {n}: {response.status_code} {response.text}")

    progress = harness.Progress("parts", parts)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for done, _ in enumerate(pool.map(send, range(1, parts + 1)), start=1):
            progress.update(done)
    progress.close()
    sent = time.perf_counter()
    completed = http.post(f"/api/uploads/{uid}/complete", timeout=600)
    if completed.status_code != 200:
        raise harness.BenchError(f"complete: {completed.status_code} {completed.text}")
    finished = time.perf_counter()
    return {"upload_id": uid, "parts": parts, "seconds_parts": round(sent - started, 2),
            "seconds_complete": round(finished - sent, 2),
            "seconds": round(finished - started, 2)}  # fmt: skip


def _dd(source: Path, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["dd", f"if={source}", f"of={target}", "bs=8M", "conv=fdatasync", "status=none"],
        check=True,
    )
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def _products_csv(rows: int) -> bytes:
    lines = ["sku,title,price,quantity,condition,brand,category,images"]
    for i in range(1, rows + 1):
        lines.append(f"BENCH-{i:07d},Bench product number {i},{10 + i % 90}.50,{1 + i % 9},"
                     f"good,Brand {i % 40},Jackets,https://img.example.test/{i}.jpg")  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def _import(http, env: dict[str, str], rows: int, workdir: Path) -> dict[str, Any]:
    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceJob

    data = _products_csv(rows)
    created = http.post(
        "/api/uploads",
        json={"filename": "products.csv", "size": len(data),
              "sha256": hashlib.sha256(data).hexdigest(), "part_size": PART},
    ).json()  # fmt: skip
    uid = created["upload_id"]
    for n in range(1, created["parts"] + 1):
        part = data[(n - 1) * PART : n * PART]
        http.put(f"/api/uploads/{uid}/parts/{n}", content=part,
                 headers={"X-Part-SHA256": hashlib.sha256(part).hexdigest()})  # fmt: skip
    done = http.post(f"/api/uploads/{uid}/complete", json={"start_import": True}).json()
    job_id = done["import_job_id"]
    cluster_env = {**harness.cluster_env(env["DATABASE_URL"], workers=1), **env}
    with harness.Cluster(cluster_env, workdir / "qcluster.log") as cluster:
        assert cluster.proc is not None
        with PeakRss(cluster.proc.pid) as rss:
            deadline = time.monotonic() + 900
            while True:
                with schema_context(SCHEMA):
                    job = MarketplaceJob.objects.get(pk=job_id)
                if job.status in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    raise harness.BenchError(f"import still {job.status}:\n{cluster.log_tail()}")
                time.sleep(0.2)
    if job.status != "completed":
        raise harness.BenchError(f"import {job.status}: {job.error_message}")
    assert job.completed_at is not None and job.started_at is not None
    seconds = (job.completed_at - job.started_at).total_seconds()
    with schema_context(SCHEMA):
        steps = {
            t.step_type: round(t.duration_seconds or 0, 2) for t in job.tasks.order_by("step_order")
        }
    return {"rows": rows, "bytes": len(data), "seconds": round(seconds, 2),
            "rows_per_second": harness.rate(rows, seconds), "step_seconds": steps,
            "cluster_peak_rss_mb": rss.mb, "largest_process_peak_rss_mb": rss.one_mb,
            "result": {k: {kk: vv for kk, vv in v.items() if kk != "errors"}
                       for k, v in (job.result or {}).items()}}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=_default_bytes())
    parser.add_argument("--rows", type=int,
                        default=20_000 if os.environ.get("CI") == "true" else 100_000)  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    harness.install_sigterm_handler()
    server, embedded = harness.server_url()
    workdir = Path(tempfile.mkdtemp(prefix="bench-upload-", dir=harness.BASE_DIR / ".data"))
    with harness.BenchDatabase(server) as db:
        harness.announce_database(db, server, embedded)
        env = {**harness.cluster_env(db.url, workers=1), "UPLOADS_ROOT": str(workdir / "uploads"),
               "UPLOADS_TENANT_QUOTA_BYTES": str(4 * args.bytes + 10**9),
               "API_RATE_LIMIT": "100000/m"}  # fmt: skip
        harness.migrate(env)
        harness.create_tenant_with_staff(SCHEMA, DOMAIN, username="staff",
                                         password="bench-pass-123", env=env)  # fmt: skip
        harness.setup_django(env)
        import logging

        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)
        from django_tenants.utils import schema_context

        from api.services import token_create

        with schema_context(SCHEMA):
            _row, token = token_create(name="bench")
        try:
            with harness.AsgiServer(env, workdir / "uvicorn.log", host=DOMAIN) as asgi:
                assert asgi.proc is not None
                http = httpx.Client(
                    base_url=f"http://127.0.0.1:{asgi.port}",
                    headers={"Host": f"{DOMAIN}:{asgi.port}", "Authorization": f"Bearer {token}"},
                    timeout=120,
                )
                print(f"  upload of {args.bytes / MB:,.0f} MB in parts of 8 MiB …", flush=True)
                with PeakRss(asgi.proc.pid) as rss:
                    upload = _upload_generated(http, args.bytes, concurrency=args.concurrency)
                data_file = workdir / "uploads" / SCHEMA / upload["upload_id"] / "data"
                print("  dd of the same bytes to the same disk …", flush=True)
                dd_seconds = _dd(data_file, workdir / "dd.bin")
                http.delete(f"/api/uploads/{upload['upload_id']}")
                print(f"  import of {args.rows:,} rows …", flush=True)
                imported = _import(http, env, args.rows, workdir)
                http.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        upload_mbps = args.bytes / MB / upload["seconds"]
        dd_mbps = args.bytes / MB / dd_seconds
        result = {
            "benchmark": NAME,
            "when": harness.now_iso(),
            "command": "python -m bench.upload " + " ".join(argv or []),
            "ci": os.environ.get("CI") == "true",
            "machine": harness.machine_info(),
            "git": harness.git_state(),
            "database": harness.describe_database(embedded, db.name),
            "upload": {
                "bytes": args.bytes, "part_bytes": PART, "concurrency": args.concurrency,
                **upload, "mb_per_second": round(upload_mbps, 1),
                "server_peak_rss_mb": rss.mb, "target_server_rss_mb": 150,
            },
            "dd": {"command": "dd if=<uploaded file> of=<same dir>/dd.bin bs=8M conv=fdatasync",
                   "seconds": round(dd_seconds, 2), "mb_per_second": round(dd_mbps, 1)},
            "throughput_ratio": round(upload_mbps / dd_mbps, 3), "target_ratio": 0.5,
            "import": imported,
        }  # fmt: skip
    path = harness.write_result(NAME, result)
    print(f"  upload {upload_mbps:,.0f} MB/s vs dd {dd_mbps:,.0f} MB/s "
          f"(ratio {result['throughput_ratio']:.0%}), server peak RSS {rss.mb} MB; "
          f"import {imported['rows_per_second']:,} rows/s, largest worker process "
          f"{imported['largest_process_peak_rss_mb']} MB → {path}")  # fmt: skip


if __name__ == "__main__":
    main()
