"""The console's chart view: braille line charts of the JSONL series, runs overlaid."""

from __future__ import annotations

import io
import time
from pathlib import Path

from pirl_console.app import PirlConsole
from pirl_console.checkpoint_source import CheckpointEntry, ValidationResult
from pirl_console.run_request import RunRequest
from pirl_console.screens.charts import ChartScreen, runs_from_checkpoints
from pirl_console.screens.checkpoints import CheckpointScreen
from pirl_console.widgets.checkpoint_table import CheckpointTable
from pirl_console.widgets.line_chart import BRAILLE_BASE, Line, LineChart, render_chart
from pirl_core.telemetry import Telemetry
from tests.console_helpers import SIZE, fake_app, fast_settings, open_charts, wait_for


def write_run(out: Path, updates: int, slope: float) -> Path:
    with (
        Telemetry(out, "learner", stdout=io.StringIO()) as learner,
        Telemetry(out, "actor-0", stdout=io.StringIO()) as actor,
    ):
        for step in range(1, updates + 1):
            actor.metrics(step - 1, success_rate=slope * step, env_steps_per_s=1000.0)
            learner.metrics(
                step, success_rate=slope * step, return_mean=slope * step, policy_loss=-0.01, approx_kl=0.02
            )
    return out


def test_render_chart_draws_every_series_on_shared_axes() -> None:
    rising = Line("rising", [(x, x / 10) for x in range(11)], "#4fa3ff")
    flat = Line("flat", [(x, 0.5) for x in range(11)], "#ff9f43")
    text = render_chart([rising, flat], width=50, height=10, markers=[5])
    rows = text.plain.splitlines()
    assert len(rows) == 10 and rows[0].startswith("━ rising  ━ flat")
    assert rows[1].strip().startswith("1┤") and rows[-2].strip().startswith("0┤")  # y range of both series
    assert rows[-1].split()[0] == "0" and rows[-1].split()[-1] == "10"  # x range
    plot = [row.split("┤", 1)[1] for row in rows[1:-1]]
    assert all(BRAILLE_BASE <= ord(c) <= BRAILLE_BASE + 0xFF for row in plot for c in row)
    # The rising line reaches the top-right and bottom-left cells; the flat one crosses the middle.
    assert plot[0][-1] != chr(BRAILLE_BASE) and plot[-1][0] != chr(BRAILLE_BASE)
    styles = {span.style for span in text.spans}
    assert {"#4fa3ff", "#ff9f43", "#6a6a6a"} <= styles  # both series and the checkpoint marker
    assert "no data yet" in render_chart([Line("x", [])], 40, 6).plain


def test_runs_from_marked_checkpoints_group_by_output_dir(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    runs = runs_from_checkpoints(
        [
            (a / "checkpoints" / "000004", 4),
            (b / "checkpoints" / "000002", 2),
            (a / "checkpoints" / "000002", 2),
        ]
    )
    assert [(r.output_dir, r.markers) for r in runs] == [(a, (2, 4)), (b, (2,))]


async def test_p_on_the_run_screen_charts_the_run(tmp_path: Path) -> None:
    out = write_run(tmp_path / "run", updates=8, slope=0.1)
    app = fake_app(out, ["--updates", "1"], autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_charts(app, pilot)
        chart = screen.charts["success rate"]
        assert [line.label for line in chart.lines] == ["learner/success_rate"]
        assert [p[0] for p in chart.lines[0].points] == list(range(1, 9))
        assert {"return", "policy loss", "approx KL", "actor env steps/s"} <= set(screen.charts)
        await pilot.pause(0.1)
        assert "learner/success_rate" in str(chart.render())
        # A live run: new records appear without a key press.
        with Telemetry(out, "learner", stdout=io.StringIO()) as learner:
            learner.metrics(9, success_rate=0.95)
        await wait_for(pilot, lambda: chart.lines[0].points[-1] == (9, 0.95), timeout=15, what="refresh")
        await pilot.press("escape")
        assert not isinstance(app.screen, ChartScreen)


class TwoRunSource:
    """Checkpoint listing of two output dirs (the real source lists one; its own tests cover it)."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    def list(self, output_dir: Path) -> list[CheckpointEntry]:
        now = time.time()
        return [
            CheckpointEntry(
                step=step, path=d / "checkpoints" / f"{step:06d}", mtime=now, size_bytes=1, is_last=i == 0
            )
            for i, (d, step) in enumerate([(self.dirs[0], 6), (self.dirs[1], 4)])
        ]

    def validate(self, checkpoint: Path, request: RunRequest) -> ValidationResult:
        return ValidationResult(checkpoint, None, [])


async def test_marked_checkpoints_overlay_their_runs(tmp_path: Path) -> None:
    a = write_run(tmp_path / "noise", updates=6, slope=0.1)
    b = write_run(tmp_path / "sde", updates=4, slope=0.2)
    request = RunRequest("toy", overrides=(("output_dir", str(a)),))
    app = PirlConsole(request=request, checkpoint_source=TwoRunSource([a, b]), settings=fast_settings())
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#profile-table").focus()
        await pilot.press("c")
        browser = app.screen
        assert isinstance(browser, CheckpointScreen)
        table = browser.query_one(CheckpointTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="two checkpoints listed")
        await pilot.press("space", "down", "space")
        assert str(table.get_row_at(0)[0]).startswith("● last") and str(table.get_row_at(1)[0]) == "● "
        charts = await open_charts(app, pilot)
        lines = charts.charts["success rate"].lines
        assert [line.label for line in lines] == [
            "noise · learner/success_rate",
            "sde · learner/success_rate",
        ]
        assert len(lines[0].points) == 6 and len(lines[1].points) == 4
        assert lines[0].color != lines[1].color
        assert sorted(charts.charts["success rate"].markers) == [4, 6]
        await pilot.press("p")  # p again closes the charts
        assert app.screen is browser
        await pilot.press("space")  # unmark the second: only the first run is charted
        assert [r.output_dir for r in browser.chart_runs()] == [a]


async def test_a_adds_and_removes_sibling_runs(tmp_path: Path) -> None:
    out = write_run(tmp_path / "runs" / "first", updates=5, slope=0.1)
    sibling = write_run(tmp_path / "runs" / "second", updates=3, slope=0.2)
    with Telemetry(sibling, "learner", stdout=io.StringIO()) as learner:
        learner.metrics(4, success_rate=0.8, clip_frac=0.3)  # a series only the sibling has
    (tmp_path / "runs" / "not-a-run").mkdir()
    app = fake_app(out, ["--updates", "1"], autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_charts(app, pilot)
        assert "clip fraction" not in screen.charts
        await pilot.press("a")
        await wait_for(pilot, lambda: "clip fraction" in screen.charts, what="sibling charted")
        labels = [line.label for line in screen.charts["success rate"].lines]
        assert labels == ["first · learner/success_rate", "second · learner/success_rate"]
        titles = [chart.border_title for chart in screen.query(LineChart)]
        assert titles.index("approx KL") < titles.index("clip fraction") < titles.index("actor env steps/s")
        await pilot.press("a")
        await wait_for(pilot, lambda: "clip fraction" not in screen.charts, what="sibling hidden")
        assert len(screen.charts["success rate"].lines) == 1
        assert "clip fraction" not in [chart.border_title for chart in screen.query(LineChart)]
