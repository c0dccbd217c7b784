import pytest

from scheduler.services import Actor


@pytest.fixture
def staff_actor():
    return Actor("staff", "admin")


@pytest.fixture
def products(tenant_a):
    from tests.factories import ProductFactory

    return [ProductFactory(sku=f"OPS-{i:03d}") for i in range(3)]


# The engine scenario helper (test provider, fast retries) of tests/integration/engine.
from tests.integration.engine.conftest import engine  # noqa: E402, F401
