"""The step-provider protocol: how marketplaces (or tests) plug steps into the engine.

A provider declares, for one marketplace, the ordered steps of each action and
the resource its jobs hold while running. The engine looks providers up here by
the job's ``marketplace`` string and never imports a marketplace by name.

Each step is idempotent by contract: ``check`` looks for the step's effect
(listing by SKU, offer by id, ...) and returns its output if it already exists;
only when it returns None does the runner call ``perform``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class StepError(Exception):
    """Base class of the errors a step raises to tell the engine what happened."""

    retryable = False

    def __init__(self, message: str, *, detail: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.detail = dict(detail or {})


class RetryableStepError(StepError):
    """Network errors, 5xx, 408, 429, timeouts: the job is retried with backoff.

    ``retry_after`` (seconds) is honoured as the minimum delay (429 Retry-After).
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        detail: Mapping[str, Any] | None = None,
    ):
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class PermanentStepError(StepError):
    """Validation and other 4xx errors: the job fails at once, message kept for staff."""


class StepTimeout(RetryableStepError):
    """A step ran past its time limit."""


class StepCancelled(Exception):
    """Raised inside a long step when staff cancelled the job (see StepContext.raise_if_cancelled)."""


@dataclass
class StepContext:
    """What a step receives. ``outputs`` maps earlier steps' ``step_type`` to their output."""

    schema_name: str
    job_id: int
    marketplace: str
    action: str
    product_id: int | None
    params: Mapping[str, Any]
    step_type: str
    step_order: int
    attempt: int
    timeout: float
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    started_monotonic: float = field(default_factory=time.monotonic)
    _is_cancelled: Callable[[], bool] = field(default=lambda: False, repr=False)

    @property
    def deadline(self) -> float:
        """time.monotonic() value after which the step has timed out."""
        return self.started_monotonic + self.timeout

    def remaining(self) -> float:
        """Seconds left before the step's time limit (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def output_of(self, step_type: str) -> Mapping[str, Any]:
        """An earlier step's output; KeyError names the missing step."""
        try:
            return self.outputs[step_type]
        except KeyError:
            raise KeyError(f"step {self.step_type!r} needs the output of {step_type!r}") from None

    def raise_if_cancelled(self) -> None:
        """Long steps call this between chunks of work so a cancel is prompt."""
        if self._is_cancelled():
            raise StepCancelled(f"job {self.job_id} cancelled during {self.step_type}")

    def raise_if_timed_out(self) -> None:
        if time.monotonic() > self.deadline:
            raise StepTimeout(
                f"step {self.step_type!r} timed out after {self.timeout:g}s",
                detail={"step": self.step_type, "limit_seconds": self.timeout},
            )


@runtime_checkable
class Step(Protocol):
    step_type: str
    timeout: float  # seconds

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        """Return the output of an effect that already exists, or None."""

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        """Apply the effect and return its output (remote ids) for the next steps."""


@dataclass(frozen=True)
class ResourceLimit:
    """What a marketplace's jobs hold while they run, per tenant.

    ``concurrency``: at most ``limit`` jobs at once (Vinted bridge: 1).
    ``rate_per_minute``: optional start rate (Etsy). Staff can override both in the admin.
    """

    key: str
    concurrency: int
    rate_per_minute: int | None = None


class StepProvider(Protocol):
    """A marketplace's steps. It may also define ``concurrency_key(*, product_id, sku,
    params) -> str`` to choose which of its jobs must never run at the same time (default:
    ``default_concurrency_key``, the product on the marketplace; "" = no such limit)."""

    marketplace: str
    resource: ResourceLimit

    def actions(self) -> Sequence[str]: ...

    def steps(self, action: str) -> Sequence[Step]:
        """The ordered steps of an action; KeyError for an unknown action."""


class UnknownProvider(LookupError):
    pass


_providers: dict[str, StepProvider] = {}


def register_provider(provider: StepProvider, *, replace: bool = False) -> StepProvider:
    """Register a marketplace's provider; checked when it registers, not when a job runs."""
    if not provider.marketplace or not provider.marketplace.islower():
        raise ValueError(f"marketplace name must be lowercase, got {provider.marketplace!r}")
    if provider.marketplace in _providers and not replace:
        raise ValueError(f"a provider for {provider.marketplace!r} is already registered")
    for action in provider.actions():
        steps = list(provider.steps(action))
        if not steps:
            raise ValueError(f"{provider.marketplace}.{action} has no steps")
        names = [s.step_type for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"{provider.marketplace}.{action} repeats a step type: {names}")
        for step in steps:
            if not isinstance(step, Step) or step.timeout <= 0:
                raise ValueError(f"{provider.marketplace}.{action}: {step!r} is not a valid Step")
    _providers[provider.marketplace] = provider
    return provider


def unregister_provider(marketplace: str) -> None:
    _providers.pop(marketplace, None)


def get_provider(marketplace: str) -> StepProvider:
    try:
        return _providers[marketplace]
    except KeyError:
        raise UnknownProvider(
            f"no step provider for marketplace {marketplace!r} "
            f"(registered: {', '.join(sorted(_providers)) or 'none'})"
        ) from None


def registered_marketplaces() -> list[str]:
    return sorted(_providers)


def steps_for(marketplace: str, action: str) -> list[Step]:
    provider = get_provider(marketplace)
    try:
        return list(provider.steps(action))
    except KeyError:
        raise UnknownProvider(
            f"marketplace {marketplace!r} has no action {action!r} "
            f"(actions: {', '.join(provider.actions())})"
        ) from None


def default_concurrency_key(marketplace: str, *, product_id: int | None, sku: str) -> str:
    """One job at a time per product and marketplace (two would race on one listing)."""
    if product_id:
        return f"{marketplace}:product:{product_id}"
    return f"{marketplace}:sku:{sku}" if sku else ""


def concurrency_key(
    marketplace: str, *, product_id: int | None, sku: str, params: dict | None
) -> str:
    """The key a job of ``marketplace`` holds while it runs (see ``StepProvider``)."""
    custom = getattr(get_provider(marketplace), "concurrency_key", None)
    if custom is not None:
        return str(custom(product_id=product_id, sku=sku, params=params or {}))[:128]
    return default_concurrency_key(marketplace, product_id=product_id, sku=sku)
