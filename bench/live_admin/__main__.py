"""``python -m bench.live_admin``."""

from bench.harness import run_cli
from bench.live_admin import main
from bench.live_admin.constants import NAME

run_cli(main, NAME)
