"""Engine settings are read at call time: environment, then ``settings.ORCHESTRATION``
(looked up once per change of the setting, since ``get`` runs several times per step)."""

from django.test import override_settings

from orchestration import conf


def test_a_settings_override_is_seen_and_undone():
    assert conf.get("LEASE_SECONDS") == conf.DEFAULTS["LEASE_SECONDS"]
    with override_settings(ORCHESTRATION={"LEASE_SECONDS": 7}):
        assert conf.get("LEASE_SECONDS") == 7
        with override_settings(ORCHESTRATION={"LEASE_SECONDS": 9}):
            assert conf.get("LEASE_SECONDS") == 9
        assert conf.get("LEASE_SECONDS") == 7
    assert conf.get("LEASE_SECONDS") == conf.DEFAULTS["LEASE_SECONDS"]


def test_the_environment_wins_and_is_read_at_each_call(monkeypatch):
    with override_settings(ORCHESTRATION={"LEASE_SECONDS": 7}):
        conf.get("LEASE_SECONDS")
        monkeypatch.setenv("ORCHESTRATION_LEASE_SECONDS", "3")
        assert conf.get("LEASE_SECONDS") == 3
        monkeypatch.delenv("ORCHESTRATION_LEASE_SECONDS")
        assert conf.get("LEASE_SECONDS") == 7


def test_a_change_made_in_place_is_seen():
    overrides = {"LEASE_SECONDS": 7}
    with override_settings(ORCHESTRATION=overrides):
        assert conf.get("LEASE_SECONDS") == 7
        overrides["LEASE_SECONDS"] = 8
        assert conf.get("LEASE_SECONDS") == 8
