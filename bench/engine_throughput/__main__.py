"""``python -m bench.engine_throughput``."""

from bench.engine_throughput import main
from bench.engine_throughput.constants import NAME
from bench.harness import run_cli

run_cli(main, NAME)
