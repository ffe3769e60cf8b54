"""Checkpoint browser over a real checkpoint tree, and the resume-mismatch table built from a
real refused resume (the real learner exits 3; the console explains why and retries)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Switch

from pirl_console.app import PirlConsole
from pirl_console.commands import HeadlessCommands
from pirl_console.run_request import RunRequest
from pirl_console.screens.checkpoints import CheckpointScreen
from pirl_console.screens.menu import MenuScreen
from pirl_console.screens.mismatch import MismatchScreen
from pirl_console.supervisor import ChildState
from pirl_console.widgets.checkpoint_detail import CheckpointDetail
from pirl_console.widgets.checkpoint_table import CheckpointTable
from pirl_console.widgets.mismatch_table import MismatchTable
from pirl_core.checkpoints import identity
from pirl_core.telemetry import Telemetry
from tests.checkpoint_helpers import SMALL_TOY, saved_run
from tests.console_helpers import ROOT, SIZE, as_text, descendants, fast_settings, wait_for
from tests.e2e_helpers import free_port


def toy_overrides(output_dir: Path, **extra: object) -> tuple[tuple[str, str], ...]:
    values = {**SMALL_TOY, "output_dir": str(output_dir), **extra}
    return tuple((k, identity.value_text(v)) for k, v in values.items())


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real toy run with checkpoints at steps 1 and 2, and the learner metrics of both."""
    cfg, _ = saved_run(tmp_path_factory.mktemp("console-ckpt"), steps=(1, 2))
    with Telemetry(cfg.output_dir, "learner") as tel:
        for step, success in ((1, 0.25), (2, 0.75)):
            tel.metrics(
                step, update=step, success_rate=success, return_mean=step * 1.5, policy_loss=-0.01 * step
            )
    return cfg.output_path


def row_texts(table: CheckpointTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_browser_lists_validates_and_resumes(tree: Path) -> None:
    request = RunRequest("toy", overrides=toy_overrides(tree, **{"recipe.denoise_steps": 8}))
    app = PirlConsole(request=request, settings=fast_settings())  # the menu, prefilled
    async with app.run_test(size=SIZE) as pilot:
        menu = app.screen
        assert isinstance(menu, MenuScreen)
        assert "already holds checkpoints" in menu.validation.errors.get("output_dir", "")
        menu.query_one("#profile-table").focus()
        await pilot.press("c")
        browser = app.screen
        assert isinstance(browser, CheckpointScreen)
        table = browser.query_one(CheckpointTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="two checkpoints listed")
        rows = row_texts(table)
        assert rows[0][0].startswith("last") and rows[0][1] == "2" and rows[1][1] == "1"
        assert rows[0][5] == "0.75" and rows[1][5] == "0.25"  # success at that step
        assert rows[0][9] == "ok"

        detail = as_text(browser.query_one(CheckpointDetail).shown)
        assert "step 2" in detail and "(last)" in detail and "recipe.denoise_steps" in detail

        # validate the selected (last) checkpoint against the current profile: denoise_steps differs
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, MismatchScreen), what="mismatch table")
        mismatch = app.screen
        fatal = [r for r in mismatch.result.rows if r.fatal]
        assert [(r.field, r.saved, r.current) for r in fatal] == [("recipe.denoise_steps", 4, 8)]
        assert mismatch.query_one(MismatchTable).row_count == len(mismatch.result.rows)
        await pilot.press("a")  # apply the saved value and hand the request back
        await wait_for(pilot, lambda: isinstance(app.screen, MenuScreen), what="back on the menu")
        assert menu.request.override("recipe.denoise_steps") == "4"
        assert menu.request.resume and menu.request.resume_from == str(tree / "checkpoints" / "000002")
        assert menu.query_one("#ov-resume", Switch).value is True
        assert menu.query_one("#ov-resume-from", Input).value.endswith("000002")
        assert menu.validation.ok, menu.validation.errors


async def test_unreadable_checkpoint_is_marked(tmp_path: Path, tree: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tree, copy, symlinks=True)
    (copy / "checkpoints" / "000001" / "training_state" / "rng_state.safetensors").write_bytes(b"x")
    request = RunRequest("toy", overrides=toy_overrides(copy))
    app = PirlConsole(request=request, settings=fast_settings())
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#profile-table").focus()
        await pilot.press("c")
        table = app.screen.query_one(CheckpointTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        assert row_texts(table)[1][9] == "unreadable"
        await pilot.press("down", "r")  # resuming from it is refused with the reason
        await pilot.pause(0.2)
        assert isinstance(app.screen, CheckpointScreen)


@pytest.mark.slow
async def test_real_refused_resume_opens_the_table_and_retry_resumes(tmp_path: Path) -> None:
    """The real learner exits 3; the table names the field; applying the saved value retries."""
    cfg, _ = saved_run(tmp_path, steps=(1,))
    overrides = toy_overrides(
        cfg.output_path, **{"recipe.denoise_steps": 8, "learner.port": free_port(), "learner.updates": 2}
    )
    request = RunRequest("toy", overrides=overrides, resume=True)
    app = PirlConsole(
        request=request,
        skip_menu=True,
        commands=HeadlessCommands(cwd=str(ROOT), extra_env={"OMP_NUM_THREADS": "1"}),
        settings=fast_settings(),
    )
    async with app.run_test(size=SIZE) as pilot:
        run = app.run_screen()
        assert run is not None
        await wait_for(
            pilot, lambda: isinstance(app.screen, MismatchScreen), timeout=180, what="exit 3 table"
        )
        assert run.learner.exit_code == 3 and run.actors[0].state is ChildState.IDLE
        mismatch = app.screen
        assert mismatch.reason.startswith("error: cannot resume from")
        fatal = [(r.field, r.saved, r.current) for r in mismatch.result.rows if r.fatal]
        assert fatal == [("recipe.denoise_steps", 4, 8)]
        # read from the learner's own JSON report, not from its printed table
        assert "--mismatch-json" in run.learner.spec.argv
        assert (cfg.output_path / "logs" / "resume-mismatch.json").is_file()
        first_pid = run.learner.pid
        await pilot.press("a")
        await wait_for(pilot, lambda: run.learner.alive and run.learner.pid != first_pid, what="retry")
        assert "--recipe.denoise_steps=4" in run.learner.spec.argv and "--resume" in run.learner.spec.argv
        await wait_for(pilot, lambda: run.learner.state is not ChildState.STARTING, timeout=180, what="ready")
        assert run.learner.state in (ChildState.READY, ChildState.RUNNING), run.learner.last_lines
        await run.stop_all()
    assert not descendants()


def test_browser_marks_fatal_as_the_validator_does(tree: Path) -> None:
    """The detail view's fatal marks are the validator's: on a toy checkpoint env.camera_size is a
    tunable (the toy env renders nothing), so it is not marked, and changing it resumes."""
    from pirl_console.checkpoint_source import CoreCheckpointSource

    source = CoreCheckpointSource()
    entries = [e for e in source.list(tree) if e.step == 1]
    (entry,) = entries
    assert entry.identity["env.type"] == "toy"
    assert "env.camera_size" not in entry.fatal_fields
    assert "env.type" in entry.fatal_fields and "recipe.denoise_steps" in entry.fatal_fields
    request = RunRequest("toy", overrides=toy_overrides(tree, **{"env.camera_size": 96}))
    result = source.validate(entry.path, request)
    (row,) = [r for r in result.rows if r.field == "env.camera_size"]
    assert not row.fatal and result.ok
    # the view's marks and the validator's verdict come from one classification
    assert set(entry.fatal_fields) == identity.fatal_fields(entry.identity)
