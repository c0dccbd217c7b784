import pytest
from django.test import override_settings

import tests.engine_providers  # noqa: F401  (registers the "testmkt" provider)
from tests.integration.webhooks.receiver import Receiver

FAST = {"RETRY_BASE_SECONDS": 0.001, "RETRY_MAX_SECONDS": 0.01, "CANCEL_POLL_SECONDS": 0.02}


@pytest.fixture
def hooks(tmp_path, tenant_a):
    """In-process engine settings (tiny backoffs) with loopback endpoints allowed."""
    from webhooks.delivery import close_clients

    with override_settings(ORCHESTRATION=FAST, WEBHOOKS_ALLOW_PRIVATE_URLS=True):
        yield tmp_path
    close_clients()  # keep-alive connections to this test's receivers


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


def params(tmp_path, **extra):
    return {"ledger": str(tmp_path / "ledger.jsonl"), "faults": str(tmp_path / "faults.json"),
            **extra}  # fmt: skip
