from pathlib import Path

from conftest import files_in, make_files, note

from daemon.service.app import App


def test_scheduled_post_is_auto_approved_and_executed_in_dry_run(app: App, vault_root: Path):
    make_files(
        vault_root,
        {
            "Needs_Action/post.md": note(
                {"type": "social_post", "platforms": ["facebook"], "text": "Hello"}
            )
        },
    )
    outcome = app.pipeline.process(vault_root / "Needs_Action/post.md")
    assert outcome.status == "done"
    assert files_in(vault_root, "Done") == ["post.md"]
