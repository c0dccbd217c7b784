import pytest
from django.test import override_settings

import tests.engine_providers  # noqa: F401  (registers the "testmkt" provider)
from orchestration import events
from tests.engine_providers import MARKETPLACE


class Engine:
    """Scenario helper: ledger/faults files, an event recorder, quick job creation."""

    def __init__(self, tmp_path, recorder):
        from django.db import connection

        self.ledger = tmp_path / "ledger.jsonl"
        self.faults = tmp_path / "faults.json"
        self._recorder = recorder
        self._delivered = len(connection.run_on_commit)

    @property
    def recorder(self) -> events.EventRecorder:
        """Events delivered so far, as if every transaction so far had committed.

        (The test runs inside one rolled-back transaction, so on-commit callbacks are
        captured; they are delivered here in registration order.)
        """
        from django.db import connection

        while self._delivered < len(connection.run_on_commit):
            _sids, callback, _robust = connection.run_on_commit[self._delivered]
            self._delivered += 1
            callback()
        return self._recorder

    def params(self, **extra):
        return {"ledger": str(self.ledger), "faults": str(self.faults), **extra}

    def spec(self, action="five", **kwargs):
        from orchestration.services import JobSpec

        return JobSpec(marketplace=MARKETPLACE, action=action, params=self.params(), **kwargs)


@pytest.fixture
def engine(tmp_path, tenant_a):
    recorder = events.EventRecorder()
    events.subscribe(recorder)
    settings = {"RETRY_BASE_SECONDS": 0.001, "RETRY_MAX_SECONDS": 0.01, "CANCEL_POLL_SECONDS": 0.02}
    with override_settings(ORCHESTRATION=settings):
        yield Engine(tmp_path, recorder)
    events.unsubscribe(recorder)
