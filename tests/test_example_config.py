from pathlib import Path

from daemon.core.config import Config, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "vaultd.example.toml"


def test_the_example_config_is_valid_and_shows_the_defaults():
    assert load_config(EXAMPLE) == Config()
