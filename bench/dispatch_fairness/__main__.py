"""``python -m bench.dispatch_fairness``."""

from bench.dispatch_fairness import main
from bench.dispatch_fairness.constants import NAME
from bench.harness import run_cli

run_cli(main, NAME)
