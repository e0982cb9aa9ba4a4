"""`[daemon] quiet_ms`: how long a file closed after writing waits before it is read."""

from pathlib import Path

import pytest

from daemon.core.config import Config, load_config
from daemon.core.errors import ConfigError
from daemon.service.app import App
from daemon.service.runner import Runner


def test_a_closed_file_waits_50_ms_by_default():
    assert load_config(None).daemon.quiet_ms == 50


def test_quiet_ms_is_read_from_the_daemon_table_and_reaches_the_queue(tmp_path: Path, app: App):
    path = tmp_path / "config.toml"
    path.write_text("[daemon]\nstability_ms = 500\nquiet_ms = 120\n")
    config = load_config(path)

    runner = Runner(app.pipeline, config)

    assert (runner.queue.window, runner.queue.quiet) == (0.5, 0.12)


@pytest.mark.parametrize(
    ("table", "wrong"),
    [
        ("quiet_ms = -1", "daemon.quiet_ms"),
        ('quiet_ms = "fast"', "daemon.quiet_ms"),
        ("stability_ms = 100\nquiet_ms = 200", "quiet_ms (200) must not be longer than"),
    ],
    ids=["negative", "not a number", "longer than the window"],
)
def test_a_bad_quiet_ms_is_named_with_the_file(tmp_path: Path, table: str, wrong: str):
    path = tmp_path / "config.toml"
    path.write_text(f"[daemon]\n{table}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert wrong in str(error.value)


def test_a_short_window_alone_is_no_error_and_caps_the_quiet_time(tmp_path: Path, app: App):
    # stability_ms = 20 is what tests and impatient users set; quiet_ms was never written.
    config = Config.model_validate({"daemon": {"stability_ms": 20}})

    runner = Runner(app.pipeline, config)
    runner.queue.hint(app.vault.root / "Needs_Action" / "x.md", "closed")

    assert runner.queue.wait_of(app.vault.root / "Needs_Action" / "x.md") == 0.02
