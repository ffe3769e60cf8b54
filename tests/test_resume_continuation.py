"""Exact continuation across processes: the real learner and actor on the toy profile, N updates
straight through vs N/2, stop, ``--resume`` (new learner and actor processes), N/2 more. The final
checkpoints must hold bitwise-identical policy, head and optimizer tensors, the same trainer
generator state and the same counters, and the resumed learner's telemetry must continue the step,
version, sample and episode numbering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pirl_core.telemetry import read_records
from tests.e2e_helpers import free_port, run_pair

N = 4
FLAGS = [
    "--profile",
    "toy",
    "--env.suite=point_reach_shaped",
    "--env.n_envs=4",
    "--env.episode_length=6",
    "--learner.episodes_per_update=8",
    "--recipe.update_epochs=2",
    "--recipe.minibatches=2",
    "--policy.hidden_dim=32",
    "--checkpoint.every=1",
]


def _run(out: Path, updates: int, *extra: str) -> str:
    args = [
        *FLAGS,
        f"--output_dir={out}",
        f"--learner.port={free_port()}",
        f"--learner.updates={updates}",
        *extra,
    ]
    codes, learner_log, actor_log = run_pair(args, out, timeout=240)
    assert codes == [0, 0], f"learner:\n{learner_log[-3000:]}\nactor:\n{actor_log[-3000:]}"
    return learner_log


def _tensors(ckpt: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for rel in sorted(p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*.safetensors")):
        for key, value in load_file(ckpt / rel).items():
            out[f"{rel}:{key}"] = value
    return out


def _metrics(out: Path) -> list[dict]:
    return [r for r in read_records(out / "telemetry" / "learner.jsonl") if r["kind"] == "metrics"]


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(straight, N)
    _run(resumed, N // 2)
    log = _run(resumed, N, "--resume")
    assert "resumed" in log

    a, b = straight / "checkpoints" / f"{N:06d}", resumed / "checkpoints" / f"{N:06d}"
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    assert any(k.startswith("pretrained_model/rl_heads.safetensors:value_head") for k in ta)
    assert any(k.startswith("training_state/policy/optimizer_state.safetensors:state/") for k in ta)
    different = [k for k in ta if not ta[k].equal(tb[k])]  # type: ignore[attr-defined]
    assert not different, f"tensors differ after resume: {different[:10]}"

    step_a = json.loads((a / "training_state" / "training_step.json").read_text())
    step_b = json.loads((b / "training_state" / "training_step.json").read_text())
    assert step_a["counters"] == step_b["counters"]
    assert (step_a["step"], step_a["policy_version"]) == (step_b["step"], step_b["policy_version"]) == (N, N)

    # the resumed learner continued the numbering, and the next checkpoints landed at the right steps
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == [
        *(f"{s:06d}" for s in range(1, N + 1)),
        "last",
    ]
    counters = ("update", "version", "samples", "episodes")
    straight_rows = [tuple(r[k] for k in counters) for r in _metrics(straight)]
    resumed_rows = [tuple(r[k] for k in counters) for r in _metrics(resumed)]
    assert resumed_rows == straight_rows
    assert [r["update"] for r in _metrics(resumed)] == list(range(1, N + 1))
