"""SFT: LeRobot's loss on a real on-disk LeRobotDataset, and the checkpoint it writes.

One SFT run (tiny X-VLA, 32 px synthetic demonstrations from tests/demo_datasets.py) serves the
module; each test checks one property of it: the loss drops, LeRobot and pirl both load the
checkpoint with the trained weights, pirl's adapter samples from it, it names no machine path,
and the refusals (existing --out, camera-size mismatch) are clear and leave disk untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.sft.__main__ import main as sft_main
from pirl_core.sft.__main__ import parse
from pirl_core.sft.train import run_sft
from tests.demo_datasets import TASKS, write_synthetic_demos
from tests.libero_synthetic import synthetic_raw_obs

CAMERA = 32
STEPS = 40


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_synthetic_demos(tmp_path_factory.mktemp("demos") / "ds", camera_size=CAMERA)


def sft_argv(dataset: Path, out: Path, steps: int = STEPS) -> list[str]:
    return [
        "--profile",
        "libero_tiny",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--warmup",
        "0",
        "--log-every",
        "10",
        "--workers",
        "0",
        f"--env.camera_size={CAMERA}",
        "--policy.size=tiny",
    ]


@pytest.fixture(scope="module")
def trained(demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "ckpt"
    args = parse(sft_argv(demos, out))
    lines: list[str] = []
    result = run_sft(args, log=lines.append)
    return result, lines


def pretrained_cfg(path: Path, camera: int = CAMERA):
    return load_config(
        "libero_tiny",
        ["policy.size=pretrained", f"policy.pretrained_path={path}", f"env.camera_size={camera}"],
    )


def test_sft_loss_drops(trained) -> None:
    result, lines = trained
    assert result.steps == STEPS
    assert any(line.startswith(f"step {STEPS}/{STEPS}") for line in lines)
    # first-step loss of a random tiny X-VLA vs the mean of the last 10 steps
    assert result.last_loss < 0.25 * result.first_loss, (result.first_loss, result.last_loss)
    assert 0 < result.pad_fraction < 1  # chunks past an episode's end repeat its last action
    info = json.loads((result.out / "sft_info.json").read_text())
    assert info["steps"] == STEPS and info["episodes"] == 2 and info["last_loss"] == result.last_loss


def test_sft_checkpoint_loads_with_lerobot_and_pirl(trained) -> None:
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    from pirl_core.policies.xvla.build import build_xvla_policy

    result, _ = trained
    out = result.out
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    lerobot_policy = XVLAPolicy.from_pretrained(str(out), local_files_only=True)
    pirl_policy = build_xvla_policy(pretrained_cfg(out)).policy
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    for policy in (lerobot_policy, pirl_policy):
        state = policy.state_dict()
        for key, value in saved.items():
            assert torch.equal(state[key], value), key
    # the weights are the trained ones, not a fresh build with the same seed
    fresh = build_xvla_policy(load_config("libero_tiny", [f"env.camera_size={CAMERA}"])).policy.state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in saved.items())


def test_sft_checkpoint_samples_through_pirl_adapter(trained) -> None:
    from pirl_core.policies.factory import make_adapter
    from pirl_core.recipe.actor_critic import build_actor_critic

    result, _ = trained
    cfg = pretrained_cfg(result.out)
    adapter = make_adapter(cfg, list(TASKS))
    assert adapter.tokenizer_path == str(result.out / "tokenizer")
    ac = build_actor_critic(adapter, cfg.recipe, seed=0)
    obs = adapter.prepare_obs(synthetic_raw_obs(2, size=CAMERA, task=TASKS[0]))
    with torch.no_grad():
        out = ac.act(obs, torch.Generator().manual_seed(0))
    assert out.x0.shape == (2, cfg.policy.chunk_size, 20)
    assert torch.isfinite(out.x0).all() and torch.isfinite(out.logp).all()
    env_action = adapter.to_env_action(out.x0, obs)
    assert env_action.shape == (2, cfg.policy.action_steps, 7)


def test_sft_checkpoint_names_no_machine_path(trained) -> None:
    result, _ = trained
    out = result.out
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer_name"] == "tokenizer"
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    for path in out.glob("*.json"):
        text = path.read_text()
        assert str(out) not in text and "/pirl_core/assets" not in text, path.name


def test_sft_refuses_existing_out_and_leaves_it(demos, tmp_path, capsys) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    keep = out / "mine.txt"
    keep.write_text("precious")
    with pytest.raises(ConfigError) as err:
        sft_main(sft_argv(demos, out, steps=1))
    assert err.value.exit_code == ExitCode.USAGE
    assert err.value.field == "--out"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"] and keep.read_text() == "precious"


def test_pretrained_camera_size_mismatch_is_clear(trained) -> None:
    from pirl_core.policies.xvla.build import build_xvla_policy

    result, _ = trained
    with pytest.raises(ConfigError) as err:
        build_xvla_policy(pretrained_cfg(result.out, camera=64))
    assert err.value.field == "env.camera_size"
    assert err.value.value == 64
    assert f"{CAMERA} (checkpoint" in err.value.expected
    assert err.value.exit_code == ExitCode.USAGE


def test_sft_refuses_dataset_without_meta(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        sft_main(sft_argv(tmp_path / "nothing", tmp_path / "out", steps=1))
    assert err.value.field == "--dataset"
    assert not (tmp_path / "out").exists()


def test_small_size_is_built_from_its_table_entry() -> None:
    from pirl_core.policies.xvla.build import XVLA_ARCHS, build_xvla_policy

    cfg = load_config("libero_tiny", ["policy.size=small", "env.camera_size=128", "policy.hidden_dim=32"])
    config = build_xvla_policy(cfg).policy.config
    arch = XVLA_ARCHS["small"]
    assert config.hidden_size == arch.hidden_size  # small fixes its own width; hidden_dim is tiny's
    assert config.depth == arch.depth
    assert config.florence_config["vision_config"]["dim_embed"] == list(arch.davit_dims)
    assert list(config.image_features.values())[0].shape == (3, 128, 128)
    tiny = build_xvla_policy(load_config("libero_tiny", ["policy.hidden_dim=32"])).policy.config
    assert tiny.hidden_size == 32 and tiny.depth == XVLA_ARCHS["tiny"].depth


def test_sft_refuses_instructions_the_tokenizer_does_not_know(tmp_path) -> None:
    demos = write_synthetic_demos(
        tmp_path / "ds", camera_size=CAMERA, episodes=1, length=4, tasks=("zork the frob",)
    )
    with pytest.raises(ConfigError) as err:
        sft_main(sft_argv(demos, tmp_path / "out", steps=1))
    assert err.value.field == "policy.tokenizer" and "zork the frob" in err.value.expected
    assert not (tmp_path / "out").exists()


def test_shipped_copy_halves_the_weights_and_loads_as_float32(trained, tmp_path: Path) -> None:
    """``python -m pirl_core.sft.ship``: what the repository carries for smoke (float16 on disk)."""
    from safetensors.torch import load_file

    from pirl_core.policies.xvla.build import build_xvla_policy
    from pirl_core.sft.ship import main as ship_main
    from pirl_core.sft.ship import ship

    result, _ = trained
    dst = tmp_path / "shipped"
    size = ship(result.out, dst)
    full = (result.out / "model.safetensors").stat().st_size
    assert size < 0.55 * full
    assert all(v.dtype != torch.float32 for v in load_file(str(dst / "model.safetensors")).values())
    info = json.loads((dst / "sft_info.json").read_text())
    assert info["weights_dtype"] == "float16" and info["shipped_from"] == result.out.name
    loaded = build_xvla_policy(pretrained_cfg(dst)).policy.state_dict()
    for key, value in load_file(str(result.out / "model.safetensors")).items():
        assert loaded[key].dtype == torch.float32
        torch.testing.assert_close(loaded[key], value, rtol=1e-3, atol=1e-4)
    # an existing destination is refused and left as it was
    before = (dst / "sft_info.json").read_text()
    with pytest.raises(ConfigError, match="DST") as refused:
        ship_main([str(result.out), str(dst)])
    assert refused.value.exit_code == ExitCode.USAGE
    assert (dst / "sft_info.json").read_text() == before
