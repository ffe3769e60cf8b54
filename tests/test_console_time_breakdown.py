"""The per-actor time-breakdown bar (pirl_console/widgets/time_breakdown.py) in the telemetry panel."""

from __future__ import annotations

from textual.app import App, ComposeResult

from pirl_console.telemetry_feed import RunTelemetry
from pirl_console.widgets.telemetry_panel import TelemetryPanel
from pirl_console.widgets.time_breakdown import BAR_WIDTH, actor_parts, breakdown_text
from pirl_core.rollout import TIME_PARTS, time_breakdown


def _records() -> list[dict]:
    # actor-0: a round event (the freshest data) after a version total; actor-1: version total only
    round_fields = time_breakdown(
        {"env_step_s": 6.0, "render_s": 2.0, "reset_s": 1.0, "inference_s": 0.5}, send_s=0.25, round_s=10.0
    )
    return [
        {"source": "actor-0", "kind": "metrics", "ts": 1.0, "time_env_step_s": 1.0, "time_idle_s": 1.0},
        {"source": "actor-0", "kind": "event", "event": "round_time", "ts": 2.0, "round": 3, **round_fields},
        {"source": "actor-1", "kind": "metrics", "ts": 2.0, "time_reset_s": 3.0, "time_inference_s": 1.0},
        {"source": "actor-2", "kind": "metrics", "ts": 2.0, "env_steps_per_s": 5.0},
    ]


def test_round_fields_and_bar_shares() -> None:
    fields = time_breakdown({"env_step_s": 6.0, "render_s": 2.0}, send_s=0.5, round_s=10.0)
    assert set(fields) == {f"time_{p}_s" for p in TIME_PARTS}
    assert fields["time_idle_s"] == 1.5 and fields["time_reset_s"] == 0.0
    tel = RunTelemetry()
    tel.apply(_records())
    a0, a1, a2 = tel.actors
    assert actor_parts(a0)["env_step"] == 6.0  # the round event wins over the older version total
    assert actor_parts(a1) == {"reset": 3.0, "inference": 1.0}
    assert actor_parts(a2) is None
    text = breakdown_text(tel).plain
    lines = text.splitlines()
    bar0 = lines[1].split()[1]
    assert len(bar0) == BAR_WIDTH  # largest-remainder cells: always the full width
    assert "step 60%" in text and "render 20%" in text and "reset 10%" in text and "idle 2%" in text
    assert "reset 75%" in text and "infer 25%" in text
    assert lines[-1].startswith("actor-2") and lines[-1].split()[1] == "-"


def test_empty_telemetry_says_so() -> None:
    assert "no round reported yet" in breakdown_text(RunTelemetry()).plain


class _PanelApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TelemetryPanel()


async def test_the_telemetry_panel_shows_the_breakdown() -> None:
    from pirl_console.widgets.time_breakdown import TimeBreakdown

    tel = RunTelemetry()
    tel.apply(_records())
    app = _PanelApp()
    async with app.run_test(size=(70, 60)):
        panel = app.query_one(TelemetryPanel)
        panel.show(tel, now=3.0, alive={})
        rendered = str(panel.query_one(TimeBreakdown).render())
        assert "actor-0" in rendered and "step 60%" in rendered
