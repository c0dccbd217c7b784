"""Live publisher sends on the Redis channel layer (issue 17): a chunk of job-level messages
as one ``group_send_many`` (two pipelines, ``config/redis_layer.py``) against the same
chunks as waves of 8 ``group_send`` calls (how the publisher sent them before).

``--messages`` (5,000) messages to 1,000 groups, 100 of them joined by one channel, in
chunks of 200 (the publisher's ``SEND_CHUNK``), alternating the two ways ``--rounds``
times on a fresh prefix each. Needs a Redis (``--redis-url``); nothing asserts on timings.

    .venv/bin/python -m bench.layer_sends
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from typing import Any

from bench import harness
from bench.scaling.constants import REDIS_URL

NAME = "layer_sends"
UNUSED_DATABASE = "postgresql://unused@127.0.0.1:1/unused"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default=REDIS_URL)
    return parser.parse_args(argv)


async def _one(args, many: bool) -> float:
    from config.redis_layer import RedisChannelLayer
    from orchestration.live.messages import LIVE_MESSAGE
    from orchestration.live.publisher import SEND_CHUNK, _group_send_many

    layer = RedisChannelLayer(hosts=[{"address": args.redis_url}], capacity=10**6,
                              prefix=f"bench-sends-{uuid.uuid4().hex[:8]}")  # fmt: skip
    try:
        channel = await layer.new_channel()
        for group in range(100):
            await layer.group_add(f"t.bench.job.{group}", channel)
        pairs = [(f"t.bench.job.{n % 1000}", {"type": LIVE_MESSAGE, "n": n})
                 for n in range(args.messages)]  # fmt: skip
        plain = type("OneByOne", (), {"group_send": staticmethod(layer.group_send)})()
        started = time.perf_counter()
        for at in range(0, len(pairs), SEND_CHUNK):
            chunk = pairs[at : at + SEND_CHUNK]
            await (layer.group_send_many(chunk) if many else _group_send_many(plain, chunk))
        return len(pairs) / (time.perf_counter() - started)
    finally:
        await layer.flush()
        await layer.close_pools()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # No database is touched: a placeholder keeps the embedded PostgreSQL from starting.
    harness.setup_django({"DATABASE_URL": os.environ.get("DATABASE_URL", UNUSED_DATABASE)})
    logging.getLogger("channels_redis").setLevel(logging.WARNING)  # "over capacity" noise
    started = time.perf_counter()
    rates: dict[str, list[float]] = {"group_send_many": [], "waves_of_group_send": []}
    for _ in range(args.rounds):
        rates["group_send_many"].append(round(asyncio.run(_one(args, True))))
        rates["waves_of_group_send"].append(round(asyncio.run(_one(args, False))))
    medians = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
    result: dict[str, Any] = {
        "benchmark": NAME, "timestamp": harness.now_iso(),
        "command": " ".join([".venv/bin/python -m bench." + NAME, *sys.argv[1:]]),
        "machine": harness.machine_info(), "git": harness.git_state(),
        "settings": {"messages": args.messages, "groups": 1000, "joined_groups": 100},
        "messages_per_s": rates,
    }  # fmt: skip
    gain = round(medians["group_send_many"] / medians["waves_of_group_send"], 2)
    result["summary"] = {"median_messages_per_s": medians, "gain": gain}
    path = harness.finish_result(NAME, result, started=started)
    print(f"== {NAME}: group_send_many {medians['group_send_many']}/s, waves of group_send "
          f"{medians['waves_of_group_send']}/s (x{gain})")  # fmt: skip
    print("\n".join(harness.measured_lines(result, path, took=True)))
    return result


if __name__ == "__main__":
    harness.run_cli(main, NAME)
