"""``python -m marketplaces.sandbox --host 127.0.0.1 --port 8100 [--profile demo] [--seed N]``.

``SANDBOX_PROFILE`` and ``SANDBOX_SEED`` in the environment set the defaults of
``--profile`` and ``--seed`` (so ``make run`` can ask for the demo profile).
"""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn

from marketplaces.sandbox.app import create_app
from marketplaces.sandbox.faults import PROFILES
from marketplaces.sandbox.state import Sandbox


class _QuietDeliberateDrops(logging.Filter):
    # Dropping a connection on purpose (fault injection) makes uvicorn log an error.
    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m marketplaces.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=os.environ.get("SANDBOX_PROFILE", "none"),
        help="starting fault rules: none (zero latency, no faults) or demo",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=int(os.environ["SANDBOX_SEED"]) if os.environ.get("SANDBOX_SEED") else None,
        help="seed the fault dice (reproducible runs)",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    sandbox = Sandbox()
    sandbox.faults.add(PROFILES[args.profile])
    if args.seed is not None:
        sandbox.faults.reseed(args.seed)
    logging.getLogger("uvicorn.error").addFilter(_QuietDeliberateDrops())
    uvicorn.run(
        create_app(sandbox),
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        lifespan="off",
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        # Longer than clients' keep-alive, so a pooled connection is never closed under them.
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
