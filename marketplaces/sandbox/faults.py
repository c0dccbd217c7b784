"""Fault injection: rules, set at run time over HTTP, that make answers slow or wrong.

A rule matches requests by marketplace, operation and shop (each optional), fires
with ``probability`` (seeded dice, so runs are reproducible), and may be limited
to the next ``times`` firings, after letting ``skip`` matching requests through. Kinds:

  latency        only delay (``latency_ms``: a number or [min, max])
  error          answer ``status`` (429 with ``retry_after``, 5xx, 400...) in the
                 marketplace's error shape, with ``message``
  timeout        hold the request ``seconds`` without answering (Vinted: never reply)
  drop           close the connection without an answer, effect not applied
  lost_response  apply the effect, write the ledger, then lose the answer
                 (``lost_as``: drop | error | timeout) — the case idempotence exists for

Every firing rule adds its latency; the first firing non-latency rule decides the outcome.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["latency", "error", "timeout", "drop", "lost_response"]
KINDS = ("latency", "error", "timeout", "drop", "lost_response")
LOST_AS = ("drop", "error", "timeout")


class RuleError(ValueError):
    """A fault rule that cannot be understood (answered 400 to the caller)."""


@dataclass
class FaultRule:
    kind: Kind
    marketplace: str | None = None
    operation: str | None = None
    shop: str | None = None
    probability: float = 1.0
    times: int | None = None  # remaining firings; None = forever
    skip: int = 0  # let this many matching requests through first
    latency_ms: float | list[float] = 0
    status: int = 500
    retry_after: float | None = None
    message: str | None = None
    seconds: float = 30.0
    lost_as: str = "drop"
    id: int = 0
    fired: int = 0

    @classmethod
    def parse(cls, raw: dict[str, Any], rule_id: int) -> FaultRule:
        known = set(cls.__dataclass_fields__) - {"id", "fired"}
        unknown = set(raw) - known
        if unknown:
            raise RuleError(f"unknown rule fields: {sorted(unknown)}")
        if raw.get("kind") not in KINDS:
            raise RuleError(f"kind must be one of {KINDS}, got {raw.get('kind')!r}")
        rule = cls(**raw, id=rule_id)
        if not 0 <= rule.probability <= 1:
            raise RuleError("probability must be between 0 and 1")
        if rule.lost_as not in LOST_AS:
            raise RuleError(f"lost_as must be one of {LOST_AS}")
        if rule.skip < 0:
            raise RuleError("skip must not be negative")
        if rule.times is not None and rule.times < 1:
            raise RuleError("times must be at least 1 (or absent for 'forever')")
        if not 100 <= int(rule.status) <= 599:
            raise RuleError("status must be an HTTP status")
        return rule

    def matches(self, marketplace: str, operation: str, shop: str | None) -> bool:
        return (
            self.marketplace in (None, "*", marketplace)
            and self.operation in (None, "*", operation)
            and self.shop in (None, "*", shop)
        )

    def latency_seconds(self, rng: random.Random) -> float:
        if isinstance(self.latency_ms, list):
            low, high = self.latency_ms
            return rng.uniform(low, high) / 1000
        return float(self.latency_ms) / 1000


@dataclass
class Outcome:
    """What to do with one request: wait ``delay`` seconds, then apply ``rule`` (None = answer normally)."""

    delay: float = 0.0
    rule: FaultRule | None = None


@dataclass
class FaultBook:
    rules: list[FaultRule] = field(default_factory=list)
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def clear(self, *, seed: int | None = None) -> None:
        self.rules.clear()
        if seed is not None:
            self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)

    def add(self, raw_rules: list[dict[str, Any]], *, replace: bool = False) -> list[FaultRule]:
        """Parse, then append (or replace with) the rules: one bad rule rejects the lot."""
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            raise RuleError("rules must be a list of objects")
        parsed = [FaultRule.parse(dict(raw), next(self._ids)) for raw in raw_rules]
        if replace:
            self.rules.clear()
        self.rules.extend(parsed)
        return parsed

    def draw(self, marketplace: str, operation: str, shop: str | None) -> Outcome:
        """Decide the fate of one request, consuming ``times`` of the rules that fire."""
        outcome = Outcome()
        for rule in list(self.rules):
            if not rule.matches(marketplace, operation, shop):
                continue
            if rule.skip > 0:
                rule.skip -= 1
                continue
            if rule.probability < 1 and self.rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.times is not None:
                rule.times -= 1
                if rule.times == 0:
                    self.rules.remove(rule)
            outcome.delay += rule.latency_seconds(self.rng)
            if rule.kind != "latency":
                outcome.rule = rule
                break
        return outcome

    def describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "rules": [asdict(r) for r in self.rules]}


PROFILES: dict[str, list[dict[str, Any]]] = {
    # Zero latency, no faults: benchmarks measure the engine, not the sandbox.
    "none": [],
    # The demo: marketplaces that are slow-ish and sometimes fail, so retries show.
    "demo": [
        {"kind": "latency", "latency_ms": [40, 250]},
        {
            "kind": "error",
            "status": 503,
            "probability": 0.03,
            "message": "Service temporarily unavailable",
        },
        {
            "kind": "error",
            "marketplace": "etsy",
            "status": 429,
            "retry_after": 2,
            "probability": 0.03,
        },
        {"kind": "lost_response", "probability": 0.01},
    ],
}
