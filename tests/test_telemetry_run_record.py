"""A telemetry file can be read alone (issue 8, finding 7): its ``event=run`` record says what the
run is — profile, env, suite, task ids, seed, pirl version and commit — and carries the resolved
config, which rebuilds the exact RunConfig. (The entry points writing it first: test_lifecycle.py.)"""

from __future__ import annotations

import io
import json
from importlib import metadata
from pathlib import Path

from pirl_core.config import config_from_dict, load_config
from pirl_core.telemetry import Telemetry, read_records, run_record


def test_run_record_describes_the_run_and_rebuilds_its_config(tmp_path: Path) -> None:
    cfg = load_config("toy", {"output_dir": str(tmp_path), "env.task_ids": [1, 3], "seed": 5})
    with Telemetry(tmp_path, "learner", stdout=io.StringIO()) as tel:
        tel.event("run", echo=False, **run_record(cfg, resumed_from=None))
    (record,) = read_records(tmp_path / "telemetry" / "learner.jsonl")
    assert record["event"] == "run" and record["source"] == "learner"
    assert (record["profile"], record["env_type"], record["suite"]) == ("toy", "toy", "point_reach")
    assert (record["task_ids"], record["seed"]) == ([1, 3], 5)
    assert record["pirl_version"] == metadata.version("pirl")  # installed editable in the venv
    commit = record["git_commit"]
    assert commit is None or len(commit.removesuffix("+dirty")) == 40
    assert config_from_dict(json.loads(json.dumps(record["config"]))) == cfg
