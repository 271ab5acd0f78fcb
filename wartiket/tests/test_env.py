"""Settings from the environment (wartiket/env.py): a wrong value stops start-up with the variable's name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.live import ROOT
from wartiket.env import database_from_url, envbool, envint


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)])
def test_envbool_reads_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("WAR_SOME_FLAG", raw)
    assert envbool("WAR_SOME_FLAG", not value) is value


def test_a_value_that_is_not_a_boolean_or_number_is_a_configuration_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("WAR_SOME_FLAG", "maybe")
    monkeypatch.setenv("WAR_SOME_COUNT", "ten")
    with pytest.raises(ImproperlyConfigured, match="WAR_SOME_FLAG"):
        envbool("WAR_SOME_FLAG", False)
    with pytest.raises(ImproperlyConfigured, match="WAR_SOME_COUNT"):
        envint("WAR_SOME_COUNT", 1)
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url("mysql://db/war")
    monkeypatch.delenv("WAR_SOME_COUNT")
    assert envint("WAR_SOME_COUNT", 7) == 7


def settings_in_fresh_interpreter(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"WAR_TESTING", "DJANGO_SETTINGS_MODULE"}}
    return subprocess.run(
        [sys.executable, "-c", f"import pytest, django; django.setup(); from django.conf import settings; {code}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "wartiket.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_test_mode_is_switched_on_by_war_testing_only_never_guessed_from_pytest_being_imported():
    assert settings_in_fresh_interpreter("print(settings.TESTING)").stdout.strip() == "False"
    assert settings_in_fresh_interpreter("print(settings.TESTING)", WAR_TESTING="1").stdout.strip() == "True"
    broken = settings_in_fresh_interpreter("print(settings.TESTING)", WAR_TESTING="perhaps")
    assert "ImproperlyConfigured: WAR_TESTING must be true or false" in broken.stderr
