"""SFT of π0 / π0.5 on pirl's demonstration dataset (``python -m pirl_core.sft --policy.type=pi05``).

One 30-step SFT run per type (tiny, 32 px synthetic demonstrations from tests/demo_datasets.py)
serves the module: LeRobot's own loss drops; the checkpoint is what ``PiAdapter.save_pretrained``
writes (arch, absolute control mode, processors with tokenizer and statistics) and loads for RL
through ``build_pretrained``, where an ActorCritic samples and scores with ratio 1; the demo batch
is what a π rollout's env preprocessor gives; an old dataset (no 8-dim LIBERO state) is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.recipe import demo_schema as schema
from pirl_core.sft.__main__ import main as sft_main
from pirl_core.sft.__main__ import parse
from pirl_core.sft.train import run_sft
from tests.demo_datasets import TASKS, write_synthetic_demos
from tests.libero_synthetic import synthetic_raw_obs

CAMERA = 32
STEPS = 30
TYPES = ("pi0", "pi05")


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_synthetic_demos(tmp_path_factory.mktemp("demos") / "ds", camera_size=CAMERA)


def sft_argv(dataset: Path, out: Path, policy_type: str, *extra: str, steps: int = STEPS) -> list[str]:
    return [
        "--profile",
        "pi05_smoke",  # relative control: SFT of π sets absolute itself
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
        f"--policy.type={policy_type}",
        *extra,
    ]


@pytest.fixture(scope="module", params=TYPES)
def trained(request, demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "ckpt"
    args = parse(sft_argv(demos, out, request.param))
    assert args.cfg.env.control_mode == "absolute"
    lines: list[str] = []
    return request.param, run_sft(args, log=lines.append), lines


def pretrained_cfg(policy_type: str, path: Path, control_mode: str = "absolute"):
    return load_config(
        "pi05_smoke",
        [
            f"policy.type={policy_type}",
            "policy.size=pretrained",
            f"policy.pretrained_path={path}",
            f"env.camera_size={CAMERA}",
            f"env.control_mode={control_mode}",
        ],
    )


def demo_loss(policy_type: str, cfg, policy, dataset_dir: Path) -> float:
    """LeRobot's loss of ``policy`` on every frame of the dataset, averaged over 8 fixed draws of
    the flow-matching noise and time (the training log's per-step losses are single noisy draws)."""
    from pirl_core.policies.registry import policy_family
    from pirl_core.recipe.demo_data import DemoBatcher, open_demos, read_info

    sft = policy_family(policy_type).sft
    info = read_info(dataset_dir, None)
    dataset = open_demos(dataset_dir, info, cfg.policy.chunk_size)
    built = sft.build(cfg)
    built.policy.load_state_dict(policy.state_dict())
    pre, _ = sft.policy_processors(built)
    batch = DemoBatcher(sft.demo_processor(CAMERA), pre, sft.demo_features)(
        torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    )
    losses = []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        for seed in range(8):
            torch.manual_seed(seed)
            losses.append(float(built.policy.forward(batch)[0]))
    return sum(losses) / len(losses)


def test_lerobot_loss_drops_and_the_log_names_the_family(trained, demos) -> None:
    from pirl_core.policies.pi.build import build_from_config, load_pi_policy

    policy_type, result, lines = trained
    assert result.steps == STEPS
    label = {"pi0": "π0 tiny", "pi05": "π0.5 tiny"}[policy_type]
    assert label in lines[0] and "X-VLA" not in lines[0]
    assert any(line.startswith(f"step {STEPS}/{STEPS}") and "grip" in line for line in lines)
    cfg = parse(sft_argv(demos, result.out.parent / "unused", policy_type)).cfg
    before = demo_loss(policy_type, cfg, build_from_config(cfg).policy, demos)  # the same seed's init
    after = demo_loss(policy_type, cfg, load_pi_policy(result.out, policy_type)[0], demos)
    assert after < 0.8 * before, (before, after)  # measured: pi0 1.84 -> 0.96, pi05 1.52 -> 1.10
    info = json.loads((result.out / "sft_info.json").read_text())
    assert info["policy_type"] == policy_type and info["control_mode"] == "absolute"


def test_checkpoint_is_the_adapters_layout_and_loads_for_rl(trained) -> None:
    """build_pretrained (strict weights, arch file, embedded processors) -> ActorCritic samples,
    and a second build scores the chain with ratio 1."""
    from safetensors.torch import load_file

    from pirl_core.policies.pi.adapter import build_pi_adapter
    from pirl_core.policies.pi.libero import ABSOLUTE_ACTION_BOUNDS
    from pirl_core.recipe.actor_critic import build_actor_critic

    policy_type, result, _ = trained
    out = result.out
    for name in ("pirl_pi_arch.json", "pirl_pi_control.json", "policy_preprocessor.json", "README.md"):
        assert (out / name).is_file(), name
    assert json.loads((out / "pirl_pi_control.json").read_text()) == {"control_mode": "absolute"}
    assert json.loads((out / "config.json").read_text())["type"] == policy_type
    card = (out / "README.md").read_text()  # the card tells how LeRobot loads a tiny π
    assert (
        "lerobot[pi]" in card and "lerobot_pi_construction" in card and "--env.control_mode=absolute" in card
    )
    cfg = pretrained_cfg(policy_type, out)
    actor = build_pi_adapter(cfg, list(TASKS))
    saved = load_file(str(out / "model.safetensors"))
    state = actor.policy.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert actor.identity()["control_mode"] == "absolute"
    np.testing.assert_array_equal(actor.processors.bounds, np.asarray(ABSOLUTE_ACTION_BOUNDS, np.float32))

    ac = build_actor_critic(actor, cfg.recipe, seed=cfg.seed)
    learner = build_actor_critic(build_pi_adapter(cfg, list(TASKS)), cfg.recipe, seed=cfg.seed)
    wire = actor.prepare_obs(synthetic_raw_obs(2, size=CAMERA, task=TASKS[0]))
    with torch.no_grad():
        sampled = ac.act(wire, torch.Generator().manual_seed(0))
        logp, _, _ = learner.evaluate(
            {k: v.clone() for k, v in wire.items()}, sampled.chain, sampled.sde_step
        )
    assert torch.isfinite(sampled.logp).all()
    assert (torch.exp(logp - sampled.logp) - 1).abs().max().item() < 1e-5
    env_action = actor.to_env_action(sampled.x0, wire)
    assert env_action.shape == (2, cfg.policy.action_steps, 7)
    low, high = actor.processors.bounds[:, 0], actor.processors.bounds[:, 1]
    assert (env_action >= low).all() and (env_action <= high).all()


def test_loading_it_in_relative_control_is_refused(trained) -> None:
    from pirl_core.policies.pi.build import build_pretrained

    policy_type, result, _ = trained
    with pytest.raises(ConfigError) as err:
        build_pretrained(pretrained_cfg(policy_type, result.out, control_mode="relative"))
    assert err.value.field == "env.control_mode" and err.value.value == "relative"
    assert "--env.control_mode=absolute" in str(err.value)


def test_eval_of_the_bare_checkpoint_takes_its_control_mode(trained) -> None:
    from pirl_core.eval.evaluate import EvalArgs, load_target

    policy_type, result, _ = trained
    args = EvalArgs(
        target=str(result.out),
        best=False,
        profile="pi05_smoke",  # relative: the checkpoint's own mode wins
        suite=None,
        tasks=None,
        episodes=1,
        init_states="eval",
        episode_length=None,
        n_envs=None,
        stochastic=False,
        seed=None,
        videos=0,
        out=None,
        overrides=[],
    )
    cfg, _ = load_target(args)
    assert cfg.policy.type == policy_type and cfg.policy.size == "pretrained"
    assert cfg.env.control_mode == "absolute" and cfg.env.camera_size == CAMERA
    assert (
        cfg.recipe.denoise_steps
        == json.loads((result.out / "config.json").read_text())["num_inference_steps"]
    )


def test_demo_batch_is_what_a_pi_rollout_sees() -> None:
    """A frame recorded through the recorder's code (X-VLA's view + the 8-dim state), read back
    through π's demo processor, equals LeRobot's generic LIBERO env preprocessor on the raw
    observation; the ee6d action becomes LeRobot's absolute 7-dim action."""
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies.xvla.processor_xvla import LiberoProcessorStep

    from pirl_core.demos.ee6d import canonical_axis_angle, to_ee6d
    from pirl_core.demos.record import frame_values
    from pirl_core.policies.pi.processors import make_env_preprocessor
    from pirl_core.policies.pi.sft import PiDemoProcessor

    raw = synthetic_raw_obs(1, seed=4, size=CAMERA)
    del raw["task"]
    frame = frame_values(raw, LiberoProcessorStep())
    rng = np.random.default_rng(0)
    actions = []
    for _ in range(3):
        rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        rot *= np.linalg.det(rot)
        a = np.concatenate([rng.uniform(-0.3, 0.3, 3), canonical_axis_angle(rot), [rng.choice([-1.0, 1.0])]])
        actions.append(a.astype(np.float32))
    batch = {  # as LeRobotDataset returns it (PNG -> float CHW in [0, 1]), collated, one chunk
        **{k: torch.from_numpy(frame[k]).permute(2, 0, 1).float()[None] / 255.0 for k in schema.IMAGE_KEYS},
        schema.STATE_KEY: torch.from_numpy(frame[schema.STATE_KEY])[None],
        schema.LIBERO_STATE_KEY: torch.from_numpy(frame[schema.LIBERO_STATE_KEY])[None],
        schema.ACTION_KEY: torch.from_numpy(np.stack([to_ee6d(a) for a in actions]))[None],
        "task": [TASKS[0]],
    }
    demo = PiDemoProcessor()(batch)
    rollout = make_env_preprocessor()(preprocess_observation(raw))
    for key in (*schema.IMAGE_KEYS, schema.STATE_KEY):
        torch.testing.assert_close(demo[key], rollout[key], atol=1e-6, rtol=0)
    assert demo[schema.STATE_KEY].shape == (1, 8)
    torch.testing.assert_close(
        demo[schema.ACTION_KEY][0], torch.from_numpy(np.stack(actions)), atol=1e-5, rtol=0
    )


def test_dataset_without_the_libero_state_is_refused(tmp_path: Path) -> None:
    old = write_synthetic_demos(
        tmp_path / "old", camera_size=CAMERA, episodes=1, length=4, libero_state=False
    )
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        sft_main(sft_argv(old, out, "pi05", steps=1))
    assert err.value.exit_code == ExitCode.USAGE
    assert err.value.field == f"--dataset {schema.LIBERO_STATE_KEY}"
    assert "python -m pirl_core.demos.record" in err.value.line() and "\n" not in err.value.line()
    assert not out.exists()


def test_explicit_relative_control_is_refused(demos: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        sft_main(sft_argv(demos, tmp_path / "out", "pi05", "--env.control_mode=relative", steps=1))
    assert err.value.field == "env.control_mode" and err.value.value == "relative"
    assert not (tmp_path / "out").exists()


# LeRobot's 8-dim LIBERO state measured at reset (init state 0, task 0) per suite, and the extremes
# of three libero_object expert demonstrations (python -m pirl_core.demos.record, 64 px).
MEASURED_STATES = (
    (-0.211, -0.011, 1.174, 3.141, -0.003, -0.088, 0.039, -0.039),  # libero_spatial
    (-0.217, 0.009, 1.171, 3.140, 0.005, -0.089, 0.039, -0.039),  # libero_goal
    (-0.046, -0.004, 0.702, 3.141, -0.001, -0.085, 0.039, -0.039),  # libero_10
    (-0.153, -0.006, 0.248, 3.141, -0.002, -0.091, 0.039, -0.039),  # libero_object
    (-0.153, -0.243, 0.044, 3.110, -0.014, -0.163, 0.033, -0.040),  # demo minima
    (0.026, 0.263, 0.266, 3.153, 0.016, -0.046, 0.040, -0.029),  # demo maxima
)


@pytest.mark.parametrize("policy_type", TYPES)
def test_libero_states_normalise_into_the_prompts_range(policy_type: str) -> None:
    """Every measured LIBERO state maps into [-1, 1] (π0.5 writes 256 bins of it into the prompt;
    below -1 a bin becomes "-1", an unknown word), in both control modes."""
    from pirl_core.policies.pi.adapter import build_pi_adapter

    cfg = load_config("pi05_smoke", [f"policy.type={policy_type}", "env.control_mode=absolute"])
    pre = build_pi_adapter(cfg, [TASKS[0]]).processors.policy_pre
    state = torch.tensor(MEASURED_STATES, dtype=torch.float32)
    out = pre({"observation.state": state, "task": [TASKS[0]] * len(state)})
    normalised = out["observation.state"][:, :8]
    assert normalised.abs().max() <= 1.0, normalised
    tokenizer = next(s for s in pre.steps if hasattr(s, "input_tokenizer")).input_tokenizer
    ids = out["observation.language.tokens"]
    assert tokenizer.unk_token_id not in ids.tolist()
