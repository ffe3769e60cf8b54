"""Logging backends fed from the telemetry records: failure isolation, W&B and TensorBoard read back."""

from __future__ import annotations

import glob
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from pirl_core.config import load_config
from pirl_core.errors import ConfigError
from pirl_core.report import main as report_main
from pirl_core.sinks import WANDB_RUN_ID_KEY, open_telemetry, resumed_wandb_run_id
from pirl_core.sinks.scalars import scalars
from pirl_core.telemetry import Telemetry, read_records, telemetry_path
from tests.e2e_helpers import run_flags, run_pair


class RaisingSink:
    name = "raising"

    def __init__(self, fail_on_close: bool = False) -> None:
        self.calls = 0
        self.closed = False
        self.fail_on_close = fail_on_close

    def write(self, record: dict) -> None:
        self.calls += 1
        raise OSError(28, "No space left on device\n(while flushing)")

    def close(self) -> None:
        self.closed = True
        if self.fail_on_close:
            raise RuntimeError("flush failed")


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.closed = False

    def write(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


def test_failing_sink_is_reported_once_and_training_records_go_on(tmp_path: Path, capsys) -> None:
    bad, good = RaisingSink(), ListSink()
    with Telemetry(tmp_path, "learner", stdout=io.StringIO(), sinks=(bad, good)) as tel:
        for step in range(1, 4):
            tel.metrics(step, policy_loss=0.1 * step)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'raising' failed" in err[0] and "No space left" in err[0]
    assert bad.calls == 1 and bad.closed  # dropped (and released) after the first failure
    records = read_records(telemetry_path(tmp_path, "learner"))
    assert [r["step"] for r in records if r["kind"] == "metrics"] == [1, 2, 3]
    failed = [r for r in records if r.get("event") == "sink_failed"]
    assert len(failed) == 1 and failed[0]["sink"] == "raising" and failed[0]["step"] == 1
    # The healthy sink saw every record, the failure event included, and was closed.
    assert [r["step"] for r in good.records if r["kind"] == "metrics"] == [1, 2, 3]
    assert any(r.get("event") == "sink_failed" for r in good.records) and good.closed


def test_sink_failing_on_close_is_reported(tmp_path: Path, capsys) -> None:
    tel = Telemetry(tmp_path, "actor-0", stdout=io.StringIO(), sinks=(RaisingSink(fail_on_close=True),))
    tel.close()
    assert "failed" in capsys.readouterr().err


def test_tensorboard_disk_full_mid_run_is_reported_once(tmp_path: Path, monkeypatch, capsys) -> None:
    from pirl_core.sinks.tensorboard import TensorBoardSink

    cfg = load_config("toy", [f"--output_dir={tmp_path}", "--telemetry.tensorboard=true"])
    tel = open_telemetry(cfg, "actor-0", stdout=io.StringIO())
    (sink,) = tel.sinks
    assert isinstance(sink, TensorBoardSink)
    tel.metrics(0, success_rate=0.1)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sink._writer, "add_scalar", full)  # the disk fills up after the first record
    for version in (1, 2):
        tel.metrics(version, success_rate=0.2)
    tel.close()
    assert capsys.readouterr().err.count("telemetry backend 'tensorboard' failed") == 1
    records = read_records(telemetry_path(tmp_path, "actor-0"))
    assert [r["step"] for r in records if r["kind"] == "metrics"] == [0, 1, 2]
    assert [r["event"] for r in records if r["kind"] == "event"] == ["logging_backend", "sink_failed"]


def test_scalars_names_and_kinds() -> None:
    metrics = {"ts": 1.0, "source": "actor-0", "kind": "metrics", "step": 3, "success_rate": 0.5, "ok": True}
    assert scalars(metrics) == {"actor-0/success_rate": 0.5, "actor-0/ok": 1.0}
    assert scalars({"source": "learner", "kind": "eval", "step": 2, "success_rate": 1}) == {
        "eval/success_rate": 1.0
    }
    event = {"source": "learner", "kind": "event", "event": "checkpoint", "step": 4, "path": "x"}
    assert scalars(event) == {"learner/checkpoint_step": 4.0}
    assert scalars({"source": "learner", "kind": "event", "event": "ready", "step": 0}) == {}
    nan = scalars({"source": "learner", "kind": "metrics", "step": 1, "approx_kl": "nan", "note": "x"})
    assert list(nan) == ["learner/approx_kl"]


def test_config_fields_are_validated() -> None:
    cfg = load_config("toy", ["--telemetry.wandb=offline", "--telemetry.tensorboard=true"])
    assert cfg.telemetry.wandb == "offline" and cfg.telemetry.tensorboard
    with pytest.raises(ConfigError, match="telemetry.wandb"):
        load_config("toy", ["--telemetry.wandb=yes"])
    with pytest.raises(ConfigError, match="telemetry.wandb_project"):
        load_config("toy", ["--telemetry.wandb=offline", "--telemetry.wandb_project="])
    with pytest.raises(ConfigError, match="telemetry.wandb_tags"):
        load_config("toy", [f"--telemetry.wandb_tags=['{'x' * 65}']"])


def test_online_without_credentials_fails_once_without_prompting(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    cfg = load_config("toy", [f"--output_dir={tmp_path / 'run'}", "--telemetry.wandb=online"])
    tel = open_telemetry(cfg, "learner", stdout=io.StringIO())
    tel.metrics(1, policy_loss=0.5)
    tel.close()
    assert "no W&B credentials" in capsys.readouterr().err
    records = read_records(telemetry_path(cfg.output_dir, "learner"))
    assert [r["sink"] for r in records if r.get("event") == "sink_failed"] == ["wandb"]
    assert any(r["kind"] == "metrics" for r in records)


def test_fork_into_new_output_dir_starts_a_new_wandb_run(tmp_path: Path) -> None:
    cfg = load_config("toy", [f"--output_dir={tmp_path / 'b'}"])
    checkpoint = tmp_path / "a" / "checkpoints" / "000004"
    assert resumed_wandb_run_id(cfg, checkpoint, {WANDB_RUN_ID_KEY: "abc"}) is None
    same = tmp_path / "b" / "checkpoints" / "000004"
    assert resumed_wandb_run_id(cfg, same, {WANDB_RUN_ID_KEY: "abc"}) == "abc"
    assert resumed_wandb_run_id(cfg, None, None) is None


# --------------------------------------------------------------------------- end to end


def wandb_history(run_file: str) -> tuple[str, list[dict[str, float]]]:
    """The run id and history rows of an offline ``.wandb`` file, read with W&B's own reader."""
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    store = datastore.DataStore()
    store.open_for_scan(run_file)
    run_id, rows = "", []
    while (data := store.scan_data()) is not None:
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id = record.run.run_id
        elif kind == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return run_id, rows


def expected_series(output_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per metric name, computed from the JSONL files alone."""
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted((output_dir / "telemetry").glob("*.jsonl")):
        for record in read_records(path):
            for name, value in scalars(record).items():
                out.setdefault(name, []).append((record["step"], value))
    return out


def tensorboard_series(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for run_dir in sorted(p for p in log_dir.iterdir() if p.is_dir()):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out[tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
    return out


@pytest.mark.slow
def test_toy_run_logs_to_wandb_offline_and_tensorboard_then_resume_keeps_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = run_flags(
        out,
        "--learner.episodes_per_update=16",
        "--learner.updates=3",
        "--checkpoint.every=3",
        "--telemetry.wandb=offline",
        "--telemetry.tensorboard=true",
    )
    codes, learner_log, actor_log = run_pair(args, tmp_path / "first", timeout=240)
    assert codes == [0, 0], learner_log + actor_log
    assert "backend=wandb mode=offline" in learner_log and "upload=wandb sync /" in learner_log
    expected = expected_series(out)
    assert {"learner/policy_loss", "actor-0/success_rate", "learner/checkpoint_step"} <= set(expected)

    # TensorBoard: same names, steps and values as the JSONL (float32 in the event files).
    tb = tensorboard_series(out / "tensorboard")
    assert set(tb) == set(expected)
    for name, points in expected.items():
        assert [s for s, _ in tb[name]] == [s for s, _ in points], name
        assert [v for _, v in tb[name]] == pytest.approx([v for _, v in points], rel=1e-5, abs=1e-6), name

    # W&B offline: one run, every JSONL series with its own step key.
    (run_file,) = glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb"))
    run_id, rows = wandb_history(run_file)
    logged: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("_") or key.endswith("/step"):
                continue
            logged.setdefault(key, []).append((int(row[f"{key.split('/')[0]}/step"]), float(value)))
    assert set(logged) == set(expected)
    for name, points in expected.items():
        assert logged[name] == [(s, pytest.approx(v)) for s, v in points], name
    saved = json.loads((out / "checkpoints" / "last" / "training_state" / "training_step.json").read_text())
    assert saved["counters"][WANDB_RUN_ID_KEY] == run_id

    # The report reads the same run (real JSONL) and writes a PNG that opens.
    assert report_main([str(out), "--out", str(tmp_path / "report")]) == 0
    with Image.open(tmp_path / "report" / "curves.png") as image:
        assert image.size[0] >= 600 and image.size[1] >= 600

    # Resume: the same W&B run id continues; the new segment logs only its own updates.
    resume_args = [a for a in args if not a.startswith("--learner.updates")] + ["--learner.updates=4"]
    codes, learner_log, actor_log = run_pair([*resume_args, "--resume"], tmp_path / "second", timeout=240)
    assert codes == [0, 0], learner_log + actor_log
    assert "upload=wandb sync --append /" in learner_log
    runs = sorted(glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(runs) == 2
    second = [r for r in runs if r != run_file][0]
    resumed_id, resumed_rows = wandb_history(second)
    assert resumed_id == run_id
    assert sorted({int(r["learner/step"]) for r in resumed_rows if "learner/policy_loss" in r}) == [4]


@pytest.mark.slow
def test_a_failing_backend_does_not_stop_a_real_run(tmp_path: Path, monkeypatch) -> None:
    """W&B online with no way to log in: the learner reports it once and trains to the end."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "run"
    args = run_flags(
        out,
        "--learner.episodes_per_update=16",
        "--learner.updates=2",
        "--telemetry.wandb=online",
    )
    codes, learner_log, actor_log = run_pair(args, tmp_path / "run", timeout=240)
    assert codes == [0, 0], learner_log + actor_log
    assert learner_log.count("telemetry backend 'wandb' failed") == 1
    records = read_records(telemetry_path(out, "learner"))
    assert [r["step"] for r in records if r["kind"] == "metrics"] == [1, 2]
    assert not (out / "wandb").exists() or not glob.glob(str(out / "wandb" / "*run-*"))
