"""A WebSocket client beside the browser: where layer → page is spent.

Runs as a child process with the browser's session cookie, opens ``/ws/live/`` on the same
uvicorn, subscribes to what the two pages watch (the batch, then its jobs) and writes every
message's arrival (``time.time()``) to a JSON-lines file until a stop file appears. Matched
with the layer tap's record and the page's record of the same message, it splits layer →
page into layer → socket (uvicorn: its LISTEN connection, the consumer, the frame out) and
socket → page (Chromium: its network process, the renderer's main thread). One more socket
adds one more consumer in uvicorn: the probe is on in every run, so runs stay comparable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.live_admin.tap import Recorder


def probe(port: int, host: str, cookie: str, batch_id: int, job_ids: list[int], out: str,
          seconds: float) -> None:  # fmt: skip
    import asyncio

    from websockets.asyncio.client import connect

    out_path = Path(out)
    stop = out_path.with_suffix(".stop.tmp")
    ready = out_path.with_suffix(".ready.tmp")

    async def main() -> None:
        async with connect(
            f"ws://{host}:{port}/ws/live/",
            host="127.0.0.1",  # tenant hosts do not resolve from Python here (PITFALLS)
            additional_headers={"Cookie": cookie},
            origin=f"http://{host}:{port}",  # type: ignore[arg-type]
        ) as socket:
            await socket.send(json.dumps({"subscribe": "batch", "id": batch_id}))
            # As live.js subscribes a page's job rows.
            await socket.send(
                json.dumps({"subscribe": "jobs", "ids": job_ids, "statuses_only": True})
            )
            snapshots = 0
            end = time.monotonic() + seconds
            with out_path.open("w") as f:
                while time.monotonic() < end and not stop.exists():
                    try:
                        text = await asyncio.wait_for(socket.recv(), timeout=0.5)
                    except TimeoutError:
                        continue
                    t = time.time() * 1000
                    m = json.loads(text)
                    if m.get("type") == "snapshot":
                        snapshots += 1
                        if snapshots == 2:
                            ready.touch()
                        continue
                    f.write(json.dumps({"t": t, "type": m.get("type"), "ts": m.get("timestamp"),
                                        "c": m.get("committed"),
                                        "job": m.get("job_id"), "status": m.get("status")}) + "\n")  # fmt: skip

    asyncio.run(main())


class Probe(Recorder):
    """The client as a child process (plain Python: it needs no Django)."""

    what = "socket probe"

    def __init__(self, path: Path, port: int, host: str, cookie: str, batch_id: int,
                 job_ids: list[int], seconds: float):  # fmt: skip
        args = (port, host, cookie, batch_id, job_ids, str(path), seconds)
        super().__init__(path, ["-c", f"from bench.live_admin.probe import probe; probe{args!r}"])
