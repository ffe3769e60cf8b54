"""Evaluation: ``python -m pirl_core.eval`` on a trained toy checkpoint, determinism, bad inputs,
the held-out init-state split, and the ``checkpoints/best`` pointer (incl. a kill -9 mid-switch)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pirl_core import init_states as plan
from pirl_core.checkpoints import layout, resume
from pirl_core.config import load_config
from pirl_core.errors import ExitCode
from pirl_core.eval.best import BestPointer
from pirl_core.eval.results import wilson_interval
from tests.e2e_helpers import ROOT, child_env, run_module


def run_eval(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_module("pirl_core.eval", *args, timeout=timeout)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A toy checkpoint trained in-process until its deterministic success is >= 0.95 on 64
    held-out episodes (about 20 updates, seconds), saved with the learner's own ``resume.save``."""
    from pirl_core.rollout import concat
    from pirl_core.rollout_plan import version_rounds
    from tests.inprocess.local_loop import build_loop, evaluate

    out = tmp_path_factory.mktemp("toy") / "run"
    cfg = load_config("toy", {"output_dir": str(out)})
    state = build_loop(cfg, eval_episodes=64)
    step = 0
    for version in range(40):
        batches = [b for b, _, _ in version_rounds(state.cfg, state.env, state.actor_critic, 0, version)]
        state.trainer.update(concat(batches))
        step = version + 1
        if evaluate(state, 64) >= 0.95:
            break
    resume.save(cfg, step, state.trainer, {"step": step, "version": step, "samples": 0, "episodes": 0})
    return out


def test_trained_toy_checkpoint_evaluates_at_least_0_9(toy_run: Path, tmp_path: Path) -> None:
    res = run_eval(str(toy_run), "--episodes", "40", "--out", str(tmp_path / "ev"))
    assert res.returncode == 0, res.stderr
    info = json.loads((tmp_path / "ev" / "eval_info.json").read_text())
    assert info["overall"]["pc_success"] >= 90.0, info["overall"]
    assert info["overall"]["n_episodes"] == 40 and len(info["per_episode"]) == 40
    (task,) = info["per_task"]
    assert task["task_id"] == 0 and len(task["metrics"]["successes"]) == 40
    lo, hi = task["wilson_95"]
    assert lo <= task["pc_success"] / 100 <= hi
    pirl = info["pirl"]
    assert pirl["checkpoint_step"] == pirl["policy_version"] > 0
    assert pirl["sampling"] == "ode" and pirl["init_states"] == list(range(40))
    # the table: header, one row per task with successes/episodes, the overall line
    assert "0/40" not in res.stdout and "overall: mean success" in res.stdout
    assert f"{sum(task['metrics']['successes'])}/40" in res.stdout


def test_same_seed_same_episodes_and_stochastic_differs(toy_run: Path, tmp_path: Path) -> None:
    runs = {}
    for name, extra in (("a", []), ("b", []), ("s1", ["--stochastic"]), ("s2", ["--stochastic"])):
        res = run_eval(
            str(toy_run), "--episodes", "12", "--tasks", "0,1", "--out", str(tmp_path / name), *extra
        )
        assert res.returncode == 0, res.stderr
        runs[name] = json.loads((tmp_path / name / "eval_info.json").read_text())["per_episode"]
    assert runs["a"] == runs["b"]
    assert runs["s1"] == runs["s2"]
    assert runs["s1"][0]["seed"] == runs["a"][0]["seed"]
    assert [e["task_id"] for e in runs["a"]] == [0, 1] * 12  # state-major: every slot keeps its task
    assert [e["init_state"] for e in runs["a"]][:4] == [0, 0, 1, 1]
    # the noisy policy runs other trajectories (lengths differ somewhere over 24 episodes)
    assert [e["length"] for e in runs["s1"]] != [e["length"] for e in runs["a"]]


def test_nothing_is_overwritten(toy_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    assert run_eval(str(toy_run), "--episodes", "2", "--out", str(out)).returncode == 0
    before = (out / "eval_info.json").read_bytes()
    res = run_eval(str(toy_run), "--episodes", "3", "--out", str(out))
    assert res.returncode == ExitCode.USAGE and res.stderr.count("\n") == 1, res.stderr
    assert (out / "eval_info.json").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--tasks", "7"], ExitCode.USAGE, "--tasks: got '7'"),
        (["--suite", "libero_11"], ExitCode.USAGE, "--suite: got 'libero_11'"),
        (["--init-states", "x,y"], ExitCode.USAGE, "--init-states"),
        (["--episodes", "0"], ExitCode.USAGE, "--episodes: got 0"),
        (["--best"], ExitCode.CHECKPOINT_UNREADABLE, "checkpoints/best"),
    ],
)
def test_bad_input_exits_with_one_line(toy_run: Path, args: list[str], code: int, words: str) -> None:
    res = run_eval(str(toy_run), *args)
    assert res.returncode == code, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.stderr


def test_unreadable_checkpoint_exits_4(toy_run: Path, tmp_path: Path) -> None:
    res = run_eval(str(tmp_path / "missing"))
    assert res.returncode == ExitCode.CHECKPOINT_UNREADABLE
    assert len(res.stderr.strip().splitlines()) == 1 and "does not exist" in res.stderr
    broken = tmp_path / "broken"
    shutil.copytree(toy_run / "checkpoints" / "last", broken / "checkpoints" / "000001")
    weights = broken / "checkpoints" / "000001" / "pretrained_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])
    os.symlink("000001", broken / "checkpoints" / "last")
    res = run_eval(str(broken))
    assert res.returncode == ExitCode.CHECKPOINT_UNREADABLE, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors" in lines[0], res.stderr


# --------------------------------------------------------------------------- split and statistics


@pytest.mark.parametrize(("n_init", "n_tasks"), [(50 * 3, 3), (50, 1), (1 << 30, 2)])
def test_training_never_runs_held_out_init_states(n_init: int, n_tasks: int) -> None:
    held = 5
    eval_ids = set(plan.state_ids(n_init, n_tasks, plan.held_out_states(n_init, n_tasks, held)))
    assert len(eval_ids) == held * n_tasks
    assert all(n_init - held * n_tasks <= g < n_init for g in eval_ids)
    raw = list(range(0, 5000)) + list(range(n_init - 300, n_init + 300))
    trained = plan.training_ids(raw, n_init, n_tasks, held)
    assert not {g % n_init for g in trained} & eval_ids
    assert [g % n_tasks for g in trained] == [g % n_tasks for g in raw]  # same task, other state
    assert plan.training_ids(raw, n_init, n_tasks, 0) == raw  # eval off: untouched


def test_actor_rounds_skip_held_out_states_of_the_toy_env(tmp_path: Path) -> None:
    from pirl_core.envs.factory import make_env
    from pirl_core.eval.periodic import periodic_ids
    from pirl_core.rollout_plan import version_rounds
    from tests.inprocess.local_loop import build_loop

    cfg = load_config(
        "toy",
        {
            "output_dir": str(tmp_path),
            "eval.every": 10,
            "eval.episodes_per_task": 4,
            "learner.episodes_per_update": 16,
        },
    )
    state = build_loop(cfg)
    env = make_env(cfg)
    held = set(periodic_ids(cfg, env))
    seen = {
        s.init_state_id
        for v in range(3)
        for _, stats, _ in version_rounds(cfg, env, state.actor_critic, 0, v)
        for s in stats
    }
    assert len(seen) == 48 and not seen & held


def test_plan_rejects_holding_out_every_state() -> None:
    from pirl_core.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.episodes_per_task"):
        plan.training_ids([0, 1], 50, 1, 50)


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    lo, hi = wilson_interval(10, 10)
    assert round(lo, 4) == 0.7225 and hi == 1.0


def test_eval_config_is_validated() -> None:
    from pirl_core.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.every"):
        load_config("toy", {"eval.every": 5})  # toy checkpoints every 10
    with pytest.raises(ConfigError, match="eval.episodes_per_task"):
        load_config("toy", {"eval.every": 10, "eval.episodes_per_task": 0})


# --------------------------------------------------------------------------- checkpoints/best


def _fake_run(tmp_path: Path, steps: tuple[int, ...]) -> Path:
    out = tmp_path / "run"
    for step in steps:
        (layout.step_dir(out, step) / "pretrained_model").mkdir(parents=True)
    (out / "telemetry").mkdir(parents=True)
    return out


def _eval_record(out: Path, version: int, rate: float) -> None:
    with (out / "telemetry" / "actor-0.jsonl").open("a") as fh:
        fh.write(
            json.dumps({"ts": 0, "source": "actor-0", "kind": "eval", "step": version, "success_rate": rate})
            + "\n"
        )


def test_best_follows_the_highest_eval_of_a_saved_checkpoint(tmp_path: Path) -> None:
    out = _fake_run(tmp_path, (2, 4))
    best = BestPointer(out)
    _eval_record(out, 0, 0.9)  # version 0 has no checkpoint: never best
    _eval_record(out, 2, 0.4)
    assert best.poll()[0] == 2
    assert layout.pointer_target(out, "best") == layout.step_dir(out, 2).resolve()
    _eval_record(out, 4, 0.4)  # a tie keeps the earlier checkpoint
    assert best.poll() is None
    _eval_record(out, 6, 0.8)  # no checkpoint 6 yet
    assert best.poll() is None
    (layout.step_dir(out, 6) / "pretrained_model").mkdir(parents=True)
    assert best.poll()[0] == 6
    # a resumed learner re-reads the file and keeps the pointer where it is
    assert BestPointer(out).poll() is None
    # retention keeps the checkpoint best points to
    (layout.step_dir(out, 8)).mkdir()
    (layout.step_dir(out, 10)).mkdir()
    os.symlink("000010", layout.last_link(out))
    resume.apply_retention(out, keep_last=1)
    assert sorted(s for s, _ in layout.step_dirs(out)) == [6, 10]


def test_best_survives_kill_9_during_its_switch(tmp_path: Path) -> None:
    out = _fake_run(tmp_path, (2, 4))
    _eval_record(out, 2, 0.5)
    assert BestPointer(out).poll()[0] == 2
    _eval_record(out, 4, 0.75)
    env = {**child_env(), "PIRL_CKPT_PAUSE_S": "60", "PIRL_CKPT_PAUSE_AT": "4:best:link"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pirl_core.eval.best import BestPointer; BestPointer({str(out)!r}).poll()",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "the writer exited before the switch"
            if line.strip() == "pirl-ckpt-event 4 best:link":
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # killed between creating the temporary link and the rename: best still the old, valid one
    assert layout.pointer_target(out, "best") == layout.step_dir(out, 2).resolve()
    debris = layout.leftovers(out)
    assert [p.name for p in debris] == [f".last-best-{proc.pid}"]
    assert resume.clean_leftovers(out) == debris and not layout.leftovers(out)
    assert BestPointer(out).poll()[0] == 4
    assert layout.pointer_target(out, "best") == layout.step_dir(out, 4).resolve()


@pytest.mark.slow
def test_periodic_eval_in_a_real_run_writes_records_and_best(tmp_path: Path) -> None:
    """Learner + actor over gRPC (toy): actor 0 evaluates versions 0 and 10 on held-out states,
    the learner points ``best`` at the best evaluated checkpoint."""
    from pirl_core.telemetry import read_records
    from tests.e2e_helpers import free_port, run_pair

    out = tmp_path / "run"
    args = [
        "--profile=toy",
        f"--output_dir={out}",
        f"--learner.port={free_port()}",
        "--learner.updates=20",
        "--eval.every=10",
        "--eval.episodes_per_task=8",
    ]
    codes, learner_log, actor_log = run_pair(args, out, timeout=240)
    assert codes == [0, 0], learner_log[-2000:] + actor_log[-2000:]
    evals = [r for r in read_records(out / "telemetry" / "actor-0.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 10]
    for r in evals:
        assert r["episodes"] == 8 and r["task0_episodes"] == 8 and r["sampling"] == "ode"
        assert r["success_rate"] == r["task0_successes"] / 8
    best = [r for r in read_records(out / "telemetry" / "learner.jsonl") if r.get("event") == "best"]
    # version 0 has no checkpoint; version 10 scores above 0 with this seed and becomes best
    assert evals[1]["success_rate"] > 0
    assert layout.pointer_target(out, "best") == layout.step_dir(out, 10).resolve()
    assert best[-1]["eval_step"] == 10 and best[-1]["success_rate"] == evals[1]["success_rate"]


def test_without_a_target_the_profile_policy_is_evaluated(tmp_path: Path) -> None:
    res = run_eval("--profile=toy", "--episodes=4", "--tasks=0,3", f"--out={tmp_path / 'ev'}", "--seed=7")
    assert res.returncode == 0, res.stderr
    info = json.loads((tmp_path / "ev" / "eval_info.json").read_text())
    assert info["pirl"]["checkpoint"] is None and info["pirl"]["checkpoint_step"] is None
    assert info["pirl"]["seed"] == 7 and info["pirl"]["task_ids"] == [0, 3]
    assert [t["task_id"] for t in info["per_task"]] == [0, 3] and info["overall"]["n_episodes"] == 8
