"""What every marketplace adapter shares: the provider shape, the step base, small helpers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from marketplaces.models import MarketplaceAccount, Product
from marketplaces.selectors import active_account, product_for_step
from orchestration.steps import ResourceLimit, Step, StepContext

Output = Mapping[str, Any]


@dataclass
class StaticProvider:
    """A provider whose actions and steps are fixed when the module loads."""

    marketplace: str
    resource: ResourceLimit
    plan: Mapping[str, Sequence[Step]]

    def actions(self) -> Sequence[str]:
        return list(self.plan)

    def steps(self, action: str) -> Sequence[Step]:
        """The ordered steps of ``action``; KeyError for an unknown one."""
        return self.plan[action]


class MarketplaceStep(ABC):
    """Base of the adapters' steps. Subclasses set ``step_type`` and implement both methods.

    Steps keep no state between calls: each call reads the product and the active
    account in the current tenant schema and does its requests within ``ctx.remaining()``.
    They never open transactions, so the engine may run them inside one or not.
    """

    marketplace: ClassVar[str]
    step_type: str
    timeout: float = 30.0

    @abstractmethod
    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        """The output of the effect if it already exists, else None."""

    @abstractmethod
    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        """Apply the effect; returns the remote ids the next steps need."""

    def __repr__(self) -> str:
        return f"<{self.marketplace}.{self.step_type} step>"

    def inputs(self, ctx: StepContext) -> tuple[MarketplaceAccount, Product]:
        return active_account(self.marketplace), product_for_step(ctx.product_id)


class ReadOnlyStep(MarketplaceStep):
    """A step with no side effect (sync): nothing to find first, ``perform`` just reads."""

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        return None


def is_subset(expected: Any, actual: Any) -> bool:
    """True when every key/value we would send is already in what the marketplace holds.

    Marketplaces answer with more fields than were sent, so equality is too strict.
    """
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and is_subset(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(is_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def target_price_quantity(ctx: StepContext, product: Product) -> tuple[Decimal, int]:
    """Price and quantity an update sets: ``ctx.params`` when given, else the product's."""
    price = Decimal(str(ctx.params.get("price", product.price))).quantize(Decimal("0.01"))
    quantity = int(ctx.params.get("quantity", product.quantity))
    return price, quantity
