"""Connector settings: the environment, completed by an env file outside the vault."""

import os
from pathlib import Path

import pytest

from daemon.core.errors import ConfigError
from daemon.core.settings import load_settings


@pytest.fixture(autouse=True)
def _restore_environment():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_env_file_values_fill_in_what_the_environment_lacks(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ODOO_DB", "from-environment")
    env = tmp_path / "vaultd.env"
    env.write_text(
        "# Odoo\nexport ODOO_URL=http://127.0.0.1:8069\nODOO_DB=from-file\n"
        "ODOO_PASSWORD='pa ss word'\nEMPTY=\n"
    )
    settings = load_settings(env)
    assert settings.get("ODOO_URL") == "http://127.0.0.1:8069"
    assert settings.get("ODOO_DB") == "from-environment"
    assert settings.get("ODOO_PASSWORD") == "pa ss word"
    assert settings.missing("ODOO_URL", "EMPTY", "ODOO_USERNAME") == ["EMPTY", "ODOO_USERNAME"]
    assert "pa ss word" in settings.secrets()
    assert os.environ["ODOO_URL"] == "http://127.0.0.1:8069"


def test_an_env_file_inside_the_vault_is_refused(vault_root: Path):
    env = vault_root / "secrets.env"
    env.write_text("FACEBOOK_PAGE_TOKEN=x\n")
    with pytest.raises(ConfigError, match="outside the vault"):
        load_settings(env, vault=vault_root)


def test_a_line_that_is_not_name_equals_value_is_named(tmp_path: Path):
    env = tmp_path / "bad.env"
    env.write_text("ODOO_URL=http://x\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"bad.env:2: expected NAME=value"):
        load_settings(env)


def test_a_missing_env_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.env")


@pytest.mark.parametrize("value", ["soon", "0", "-1", "7200"])
def test_a_call_timeout_that_is_not_seconds_is_named(value: str):
    from daemon.core.settings import Settings

    with pytest.raises(ConfigError, match=f"VAULTD_CALL_TIMEOUT='{value}': expected seconds"):
        Settings({"VAULTD_CALL_TIMEOUT": value}).call_timeout()
    assert Settings({"VAULTD_CALL_TIMEOUT": "2.5"}).call_timeout() == 2.5
    assert Settings({}).call_timeout() is None
