"""``python -m tools.screenshots DIR`` (``make screenshots``): regenerate the console SVGs.

Each screenshot is the real app driven headless with Textual's Pilot at a fixed terminal size:

* ``menu.svg`` — the profile menu, smoke preselected;
* ``run.svg`` — the run screen mid-training of a real learner and actor on the toy profile
  (numbers therefore differ from one regeneration to the next);
* ``checkpoints.svg`` — the checkpoint browser over a real checkpoint tree (written with
  ``pirl_core.checkpoints`` from a freshly built toy trainer, plus learner telemetry);
* ``mismatch.svg`` — the resume-mismatch table from validating that checkpoint against a
  profile that changed identity fields;
* ``charts.svg`` — the chart view (``p``) over the telemetry the real run of ``run.svg`` wrote;
* ``eval.svg`` — the checkpoint browser's evaluate action (``e``): the real ``python -m pirl_core.eval``
  on the newest toy checkpoint in its pane, and the per-task success table of its result.

Everything happens in a temporary directory; only the SVGs are written to DIR.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

from pirl_core.errors import ExitCode
from pirl_core.process_env import configure_process

SIZE = (150, 44)
RUN_DIR = "outputs/toy-demo"
# Small toy settings so building the trainer for the checkpoint tree takes seconds.
TOY_OVERRIDES = {
    "env.suite": "point_reach_shaped",
    "env.n_envs": 4,
    "env.episode_length": 6,
    "learner.episodes_per_update": 4,
    "learner.updates": 120,
    "checkpoint.every": 40,
    "policy.hidden_dim": 32,
}


async def _wait(pilot, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("screenshot scene did not reach its state in time")
        await pilot.pause(0.05)


def _write_checkpoint_tree() -> None:
    """Checkpoints at steps 40, 80 and 120 of a toy run, and the learner metrics of a run."""
    from pirl_core.checkpoints import resume
    from pirl_core.config import load_config
    from pirl_core.learner import build_trainer
    from pirl_core.telemetry import Telemetry
    from tools.screenshots.fake_child import learner_metrics

    cfg = load_config("toy", {**TOY_OVERRIDES, "output_dir": RUN_DIR})
    resume.prepare_run(cfg, resume=False)
    trainer = build_trainer(cfg)
    with open(os.devnull, "w") as quiet, Telemetry(cfg.output_dir, "learner", stdout=quiet) as tel:
        for step in range(1, 121):
            tel.metrics(step, **learner_metrics(step, 120))
            if step % 40 == 0:
                counters = {"step": step, "version": step, "samples": 512 * step, "episodes": 4 * step}
                resume.save(cfg, step, trainer, counters)


def _request(**extra: object):
    from pirl_console.run_request import RunRequest
    from pirl_core.quoting import value_text

    values = {**TOY_OVERRIDES, "output_dir": RUN_DIR, **extra}
    return RunRequest("toy", overrides=tuple((k, value_text(v)) for k, v in values.items()))


async def _menu(out: Path) -> None:
    from pirl_console.app import PirlConsole

    app = PirlConsole()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        app.save_screenshot("menu.svg", str(out))


async def _run(out: Path) -> None:
    """The real learner and actor on the toy profile (seconds per dozen updates), caught
    mid-training: real commands, real telemetry, real process stats."""
    from pirl_console.app import PirlConsole
    from pirl_console.run_request import RunRequest
    from pirl_console.supervisor import ChildState

    request = RunRequest(
        "toy",
        overrides=(("output_dir", "outputs/toy/demo"), ("learner.updates", "400"), ("learner.port", "50197")),
    )
    app = PirlConsole(request=request, skip_menu=True)
    async with app.run_test(size=SIZE) as pilot:
        run = app.run_screen()
        assert run is not None
        await _wait(
            pilot,
            lambda: (run.telemetry.progress()[0] or 0) >= 30 and run.actors[0].state is ChildState.RUNNING,
            timeout=180,
        )
        await pilot.pause(1.2)  # a stats sample and a header tick
        app.save_screenshot("run.svg", str(out))
        await run.stop_all()


async def _charts(out: Path) -> None:
    """``p`` on the menu charts the typed output dir: the real toy run ``_run`` left behind."""
    from pirl_console.app import PirlConsole
    from pirl_console.run_request import RunRequest
    from pirl_console.screens.charts import ChartScreen

    app = PirlConsole(request=RunRequest("toy", overrides=(("output_dir", "outputs/toy/demo"),)))
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#profile-table").focus()
        await pilot.press("p")
        charts = app.screen
        assert isinstance(charts, ChartScreen)
        await _wait(pilot, lambda: len(charts.charts) >= 6)
        await pilot.pause(0.3)
        app.save_screenshot("charts.svg", str(out))


async def _checkpoints(out: Path) -> None:
    from pirl_console.app import PirlConsole
    from pirl_console.screens.checkpoints import CheckpointScreen
    from pirl_console.screens.mismatch import MismatchScreen
    from pirl_console.widgets.checkpoint_table import CheckpointTable

    # The current profile changed two identity fields and one tunable since the run.
    request = _request(**{"recipe.denoise_steps": 8, "policy.chunk_size": 8, "recipe.lr": 1e-3})
    app = PirlConsole(request=request)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#profile-table").focus()
        await pilot.press("c")
        browser = app.screen
        assert isinstance(browser, CheckpointScreen)
        table = browser.query_one(CheckpointTable)
        await _wait(pilot, lambda: table.row_count == 3)
        await pilot.pause(0.2)
        app.save_screenshot("checkpoints.svg", str(out))
        await pilot.press("v")
        await _wait(pilot, lambda: isinstance(app.screen, MismatchScreen))
        await pilot.pause(0.2)
        app.save_screenshot("mismatch.svg", str(out))


async def _eval(out: Path) -> None:
    from pirl_console.app import PirlConsole
    from pirl_console.screens.checkpoints import CheckpointScreen
    from pirl_console.screens.evaluation import EvalScreen
    from pirl_console.supervisor import ChildState
    from pirl_console.widgets.checkpoint_table import CheckpointTable

    app = PirlConsole(request=_request())
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#profile-table").focus()
        await pilot.press("c")
        browser = app.screen
        assert isinstance(browser, CheckpointScreen)
        await _wait(pilot, lambda: browser.query_one(CheckpointTable).row_count == 3)
        await pilot.press("e")
        await _wait(pilot, lambda: isinstance(app.screen, EvalScreen))
        screen = app.screen
        await _wait(pilot, lambda: screen.child.state in (ChildState.EXITED, ChildState.FAILED), timeout=180)
        await _wait(pilot, lambda: screen.table is not None)
        await pilot.pause(0.5)
        app.save_screenshot("eval.svg", str(out))


async def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix="pirl-screenshots-") as tmp:
        previous = Path.cwd()
        os.chdir(tmp)  # relative output dirs keep the pictures free of temp paths
        try:
            await _menu(out)
            await _run(out)
            await _charts(out)
            _write_checkpoint_tree()
            await _checkpoints(out)
            await _eval(out)
        finally:
            os.chdir(previous)
    return [
        out / name
        for name in ("menu.svg", "run.svg", "charts.svg", "checkpoints.svg", "mismatch.svg", "eval.svg")
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "screenshots")
    configure_process()
    with contextlib.suppress(KeyError):
        del os.environ["TEXTUAL"]  # no devtools in headless runs
    for path in asyncio.run(generate(out)):
        print(f"wrote {path}")
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
