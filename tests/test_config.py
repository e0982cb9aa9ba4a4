"""The config file and the state directory."""

from decimal import Decimal
from pathlib import Path

import pytest

from daemon.core.config import default_config_path, load_config, state_dir_for
from daemon.core.errors import ConfigError


def test_no_config_file_means_the_design_defaults():
    config = load_config(None)
    assert config.policy.amount_thresholds == {"USD": Decimal(100)}
    assert config.policy.approval_expiry_hours == 48
    assert config.daemon.stability_ms == 300
    assert config.daemon.rescan_seconds == 60


def test_config_file_overrides_thresholds_and_timings(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text(
        "[policy]\namount_thresholds = { USD = 250, EUR = 200 }\napproval_expiry_hours = 24\n"
        "[daemon]\nstability_ms = 100\n"
    )
    config = load_config(path)
    assert config.policy.amount_thresholds == {"USD": Decimal(250), "EUR": Decimal(200)}
    assert config.policy.approval_expiry_hours == 24
    assert config.daemon.stability_ms == 100


def test_every_bad_setting_is_named_with_the_file(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text("[policy]\napproval_expiry_hours = -1\nthreshold = 5\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert f"{path}: policy.approval_expiry_hours" in message
    assert f"{path}: policy.threshold" in message


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_default_config_path_prefers_the_environment(tmp_path: Path, monkeypatch):
    assert default_config_path() is None
    xdg = tmp_path / "xdg-config" / "vaultd"
    xdg.mkdir(parents=True)
    (xdg / "config.toml").write_text("")
    assert default_config_path() == xdg / "config.toml"
    monkeypatch.setenv("VAULTD_CONFIG", str(tmp_path / "other.toml"))
    assert default_config_path() == tmp_path / "other.toml"


def test_state_dir_is_per_vault_under_xdg_state_home(tmp_path: Path):
    one = state_dir_for(tmp_path / "vault-one")
    two = state_dir_for(tmp_path / "vault-two")
    assert one != two
    assert one.parent == (tmp_path / "xdg-state" / "vaultd").resolve()
    assert one.name.startswith("vault-one-")


def test_state_dir_inside_the_vault_is_refused(tmp_path: Path, monkeypatch):
    vault = tmp_path / "vault"
    vault.mkdir()
    with pytest.raises(ConfigError, match="outside the vault"):
        state_dir_for(vault, vault / ".vaultd")
    monkeypatch.setenv("VAULTD_STATE_DIR", str(vault))
    with pytest.raises(ConfigError, match="outside the vault"):
        state_dir_for(vault)
