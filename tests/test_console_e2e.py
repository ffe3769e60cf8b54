"""End to end: the console drives the real smoke run (learner + actor on LIBERO, the shipped SFT X-VLA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pirl_console.app import PirlConsole
from pirl_console.commands import HeadlessCommands
from pirl_console.run_request import RunRequest
from pirl_console.screens.run import RunScreen
from pirl_console.supervisor import ChildState
from pirl_console.widgets.pane_header import badge
from tests.console_helpers import ROOT, SIZE, descendants, wait_for
from tests.e2e_helpers import free_port


@pytest.mark.slow
async def test_console_runs_the_smoke_profile_to_completion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the run dir (outputs/smoke/<stamp>) lands here
    # The menu with smoke preselected; the port is set so parallel tests cannot collide, and the
    # episodes are cut to 16 steps: this checks the console's plumbing (tests/test_e2e_smoke.py runs
    # the full default smoke and its rewards).
    request = RunRequest(
        "smoke", overrides=(("learner.port", str(free_port())), ("env.episode_length", "16"))
    )
    app = PirlConsole(
        request=request,
        commands=HeadlessCommands(extra_env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}),
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        await pilot.press("enter")  # one key starts the smoke run
        await pilot.pause(0.2)
        run = app.screen
        assert isinstance(run, RunScreen)
        learner, actor = run.learner, run.actors[0]
        assert learner.spec.argv[1:4] == ("-m", "pirl_core.learner", "--profile")
        await wait_for(pilot, lambda: actor.alive, timeout=300, what="actor started after ready")
        assert learner.ready_at is not None and actor.started_at >= learner.ready_at
        await wait_for(
            pilot,
            lambda: learner.state is ChildState.EXITED and actor.state is ChildState.EXITED,
            timeout=900,
            what="the smoke run to finish",
        )
        await pilot.pause(0.5)
        tail = "\n".join(learner.last_lines)
        assert learner.exit_code == 0, tail
        assert actor.exit_code == 0, "\n".join(actor.last_lines)
        assert badge(learner)[0] == "exited 0 · done"
        assert run.telemetry.progress() == (2, 2)
        assert run.telemetry.learner is not None and run.telemetry.learner.value("ratio_check") < 1e-4
        assert run.telemetry.actor_sum("env_steps_per_s") is not None
        assert any(line.startswith("[learner] done updates=2") for line in learner.last_lines)
        out = Path(run.config.output_dir)
        assert (out / "checkpoints" / "last").is_symlink()
        assert "[learner] done updates=2" in (out / "logs" / "learner.log").read_text()
        assert (out / "logs" / "actor-0.log").stat().st_size > 0
        await pilot.press("q")  # nothing runs any more: quits at once
    assert app.return_value == 0
    assert not descendants()
    # the run got its own timestamped dir under the profile's outputs/smoke, relative to the
    # console's working directory (this test's tmp dir), not to the checkout
    assert out.parts[:2] == ("outputs", "smoke") and len(out.parts) == 3, out
    assert out.resolve().parent == (tmp_path / "outputs" / "smoke").resolve()
    assert not (ROOT / out).exists(), "nothing of the run lands in the checkout"
