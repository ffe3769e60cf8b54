"""benchmarks/libero_lift.py's stage bookkeeping: a stage's wall time survives ``--reuse`` and a
stage that ran elsewhere is reported as untimed, never as 0 minutes (the pipeline itself is a
benchmark, too long for a test)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lift_module():
    spec = importlib.util.spec_from_file_location("libero_lift", REPO / "benchmarks" / "libero_lift.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("libero_lift", module)  # dataclasses look their module up by name
    spec.loader.exec_module(sys.modules["libero_lift"])
    return sys.modules["libero_lift"]


def test_reused_stage_keeps_its_recorded_wall_time(tmp_path: Path) -> None:
    lift = _lift_module()
    out, logs = tmp_path / "out", tmp_path / "logs"
    logs.mkdir()
    stage = lift.Stage(
        "make", [sys.executable, "-c", f"open({str(out)!r}, 'w').write('x'); print('made')"], out
    )
    wall = lift.run_stage(stage, logs, reuse=False)
    assert wall is not None and wall > 0 and out.read_text() == "x"
    assert "made" in (logs / "make.log").read_text()
    assert lift.run_stage(stage, logs, reuse=True) == pytest.approx(wall, abs=0.1)
    (logs / "make.wall_s").unlink()  # e.g. a demos folder linked from another run
    assert lift.run_stage(stage, logs, reuse=True) is None
    assert lift.minutes(None) == "reused (not timed here)" and lift.minutes(90.0) == "1.5 min"


def test_existing_output_without_reuse_is_refused_and_kept(tmp_path: Path) -> None:
    lift = _lift_module()
    out = tmp_path / "out"
    out.write_text("precious")
    stage = lift.Stage("make", [sys.executable, "-c", f"open({str(out)!r}, 'w').write('x')"], out)
    with pytest.raises(SystemExit, match="exists; pass --reuse"):
        lift.run_stage(stage, tmp_path, reuse=False)
    assert out.read_text() == "precious"


def test_failing_stage_names_its_log(tmp_path: Path) -> None:
    lift = _lift_module()
    stage = lift.Stage("broken", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "never")
    with pytest.raises(SystemExit, match=r"stage broken exited 3 \(log: .*broken\.log\)"):
        lift.run_stage(stage, tmp_path, reuse=False)
    assert not (tmp_path / "broken.wall_s").exists()


def _compare_module():
    spec = importlib.util.spec_from_file_location(
        "libero_lift_compare", REPO / "benchmarks" / "libero_lift_compare.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("libero_lift_compare", module)
    spec.loader.exec_module(sys.modules["libero_lift_compare"])
    return sys.modules["libero_lift_compare"]


def _lift_json(work: Path, before: dict, after: dict, curve: list, **extra: object) -> None:
    work.mkdir()
    record = {"before": before, "after": after, "curve": curve, **extra}
    (work / "lift.json").write_text(json.dumps(record))


def test_compare_tables_and_charts_runs_side_by_side(tmp_path: Path) -> None:
    compare = _compare_module()
    _lift_json(
        tmp_path / "a", {"0": [6, 10], "5": [0, 10]}, {"0": [2, 10], "5": [0, 10]}, [[0, 0.3], [4, 0.2]]
    )
    _lift_json(
        tmp_path / "b",
        {"0": [3, 10]},
        {"0": [7, 10]},
        [[0, 0.3], [5, 0.5]],
        argv=["--work", "x", "--updates", "10"],
    )
    _lift_json(tmp_path / "c", {"0": [3, 10]}, {"0": [3, 10]}, [[0, 0.3]], updates=6)
    runs = [compare.load_run(f"{name}={tmp_path / name}") for name in ("a", "b", "c")]
    assert [r.updates for r in runs] == [compare.DEFAULT_UPDATES, 10, 6]
    table = compare.markdown(runs)
    assert "| a | 6/20 = 0.30" in table and "2/20 = 0.10" in table and "-0.20" in table
    assert (
        "| b | 3/10 = 0.30" in table
        and "7/10 = 0.70" in table
        and "(v10) | +0.40 | 0: 0.30, 5: 0.50 |" in table
    )
    png = tmp_path / "chart.png"
    compare.main([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--png", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_names_a_missing_run(tmp_path: Path) -> None:
    compare = _compare_module()
    with pytest.raises(SystemExit, match=r"run 'x': .*lift.json not found"):
        compare.load_run(f"x={tmp_path}")
    with pytest.raises(SystemExit, match="expected LABEL=WORKDIR"):
        compare.load_run(str(tmp_path))
