"""A listener on the channel layer beside the browser: where a message's delay is spent.

Runs in ``manage.py shell`` with the run's environment (the same channel layer as uvicorn
and the cluster), joins the groups the two pages join (the batch's and each watched job's),
and writes every message's arrival (``time.time()``) to a JSON-lines file until a stop file
appears. Matched with the page's own record of the same message (type, timestamp, job,
status), it splits event → page into event → channel layer (the worker's commit, the live
publisher's queue and send, the layer's delivery to a listener) and layer → page (the same
delivery to uvicorn, the consumer, the WebSocket, the browser). One more group member adds
one more delivery per send: the tap is on in every run, so runs stay comparable.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path


def tap(schema: str, batch_id: int, job_ids: list[int], out: str, seconds: float) -> None:
    import asyncio

    from channels.layers import get_channel_layer

    from orchestration.live.messages import group_name

    out_path = Path(out)
    stop = out_path.with_suffix(".stop.tmp")
    ready = out_path.with_suffix(".ready.tmp")

    async def main() -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        groups = [group_name(schema, "batch", batch_id)]
        groups += [group_name(schema, "job", pk) for pk in job_ids]
        for group in groups:
            await layer.group_add(group, channel)
        ready.touch()
        end = time.monotonic() + seconds
        with out_path.open("w") as f:
            while time.monotonic() < end and not stop.exists():
                try:
                    event = await asyncio.wait_for(layer.receive(channel), timeout=0.5)
                except TimeoutError:
                    continue
                t = time.time() * 1000
                m = event.get("message") or {}
                f.write(json.dumps({"t": t, "type": m.get("type"), "ts": m.get("timestamp"),
                                    "c": m.get("committed"),
                                    "job": m.get("job_id"), "status": m.get("status")}) + "\n")  # fmt: skip
        for group in groups:
            await layer.group_discard(group, channel)

    asyncio.run(main())


def read_tap(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


class Recorder:
    """A child process that writes one JSON line per message it gets until a stop file
    appears; ``start`` returns once it has touched its ready file."""

    what = "recorder"

    def __init__(self, path: Path, argv: list[str], env: dict[str, str] | None = None):
        self.path, self.argv, self.env = path, argv, env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Recorder:
        import sys

        from bench import harness

        for suffix in (".stop.tmp", ".ready.tmp"):
            self.path.with_suffix(suffix).unlink(missing_ok=True)
        self._log = self.path.with_suffix(".log.tmp").open("wb")
        proc = self.proc = subprocess.Popen(
            [sys.executable, *self.argv], cwd=harness.BASE_DIR, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.path.with_suffix(".ready.tmp").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                self._log.close()
                self.proc = None
                raise harness.BenchError(f"{self.what} did not start; log {self._log.name}")
            time.sleep(0.1)
        return self

    def stop(self) -> list[dict]:
        if self.proc is None:
            return []
        self.path.with_suffix(".stop.tmp").touch()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self.proc = None
        records = read_tap(self.path)
        for suffix in (".stop.tmp", ".ready.tmp"):
            self.path.with_suffix(suffix).unlink(missing_ok=True)
        return records


class Tap(Recorder):
    """The listener as a child process (``manage.py shell``) with the run's environment."""

    what = "layer tap"

    def __init__(self, env: dict[str, str], path: Path, schema: str, batch_id: int,
                 job_ids: list[int], seconds: float):  # fmt: skip
        args = (schema, batch_id, job_ids, str(path), seconds)
        super().__init__(
            path,
            ["manage.py", "shell", "-c", f"from bench.live_admin.tap import tap; tap{args!r}"],
            env,
        )
