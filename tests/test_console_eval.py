"""The checkpoint browser's evaluate action: a pane runs the real ``python -m pirl_core.eval`` on
the selected checkpoint and the per-task table shows its result; the table's sources (an
``eval_info.json`` or periodic ``kind=eval`` telemetry) and the eval curve in the chart panels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from pirl_console.app import PirlConsole
from pirl_console.eval_results import latest_eval
from pirl_console.run_request import RunRequest
from pirl_console.screens.checkpoints import CheckpointScreen
from pirl_console.screens.evaluation import EvalScreen
from pirl_console.supervisor import ChildState
from pirl_console.widgets.checkpoint_table import CheckpointTable
from pirl_core.series import PANELS, load_run
from pirl_core.telemetry import Telemetry
from tests.checkpoint_helpers import saved_run
from tests.console_helpers import SIZE, as_text, fast_settings, wait_for
from tests.test_console_checkpoints import toy_overrides


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg, _ = saved_run(tmp_path_factory.mktemp("console-eval"), steps=(1,))
    return cfg.output_path


async def test_evaluate_action_runs_the_eval_command_and_fills_the_table(tree: Path) -> None:
    app = PirlConsole(request=RunRequest("toy", overrides=toy_overrides(tree)), settings=fast_settings())
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#profile-table").focus()
        await pilot.press("c")
        browser = app.screen
        assert isinstance(browser, CheckpointScreen)
        await wait_for(pilot, lambda: browser.query_one(CheckpointTable).row_count == 1, what="checkpoint")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EvalScreen), what="eval screen")
        screen = app.screen
        argv = screen.child.spec.argv
        assert argv[1:4] == ("-m", "pirl_core.eval", str(tree / "checkpoints" / "000001"))
        await wait_for(
            pilot,
            lambda: screen.child.state in (ChildState.EXITED, ChildState.FAILED),
            what="eval exit",
            timeout=120,
        )
        assert screen.child.exit_code == 0, "\n".join(screen.child.last_lines)
        await wait_for(pilot, lambda: screen.query_one("#eval-table", DataTable).row_count == 1, what="table")
        row = [str(c) for c in screen.query_one("#eval-table", DataTable).get_row_at(0)]
        (info_path,) = (tree / "eval").glob("*/eval_info.json")
        info = json.loads(info_path.read_text())
        successes = sum(info["per_task"][0]["metrics"]["successes"])
        assert row[0] == "0" and row[2] == f"{successes}/10" and row[1].startswith("move the point")
        assert "mean success" in as_text(screen.query_one("#eval-title", Static).render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointScreen), what="back in the browser")


def test_latest_eval_prefers_the_newest_source_and_reads_periodic_records(tmp_path: Path) -> None:
    assert latest_eval(tmp_path) is None
    with Telemetry(tmp_path, "actor-0") as tel:
        tel.evaluation(
            10, success_rate=0.5, task0_successes=3, task0_episodes=4, task2_successes=1, task2_episodes=4
        )
    table = latest_eval(tmp_path)
    assert table is not None and "version 10" in table.title
    assert [(r.task_id, r.successes, r.episodes) for r in table.rows] == [(0, 3, 4), (2, 1, 4)]
    assert table.overall == 0.5
    # the chart screen's success panel draws the eval curve next to training's
    run = load_run(tmp_path)
    panel = next(p for p in PANELS if p.title == "success rate")
    assert "eval/success_rate" in panel.names(run.series)
