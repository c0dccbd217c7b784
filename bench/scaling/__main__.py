"""``python -m bench.scaling``."""

from bench import harness
from bench.scaling import main

harness.run_cli(main, "scaling")
