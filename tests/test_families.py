"""Env and policy families are registry records: toy and LIBERO, MLP and X-VLA resolve through the
same API, an unknown name is a one-line error naming the known ones, and a new family needs only its
own registration (no ``if``-chain elsewhere)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pirl_core.config import CONFIG_SIZES, LIBERO_SUITES, TOY_SUITES, EnvConfig, load_config
from pirl_core.envs import registry as env_registry
from pirl_core.envs.factory import make_env, task_descriptions
from pirl_core.envs.registry import env_families, env_family, register_env_family
from pirl_core.envs.workers import make_local_env, resolve_workers
from pirl_core.errors import ConfigError
from pirl_core.policies import registry as policy_registry
from pirl_core.policies.factory import make_adapter
from pirl_core.policies.registry import lerobot_policy_family, policy_families, policy_family

REPO = Path(__file__).resolve().parents[1]


def test_unknown_env_family_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        env_family("maniskill")
    assert (
        str(err.value)
        == "env.type: got 'maniskill', expected a registered env family: one of 'libero', 'toy'"
    )
    assert env_families() == ("libero", "toy")


def test_unknown_policy_family_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        policy_family("smolvla")
    assert (
        str(err.value)
        == "policy.type: got 'smolvla', expected a registered policy family: one of 'mlp', 'pi0', 'pi05', 'xvla'"
    )
    assert policy_families() == ("mlp", "pi0", "pi05", "xvla")


def test_toy_and_libero_are_records_of_the_same_shape() -> None:
    toy, libero = env_family("toy"), env_family("libero")
    assert (toy.suites, libero.suites) == (TOY_SUITES, LIBERO_SUITES)
    assert (toy.action_dim, libero.action_dim) == (2, 7)
    assert (toy.default_workers, libero.default_workers) == (1, 0)
    assert (toy.instructions_in_obs, libero.instructions_in_obs) == (False, True)
    assert toy.video_frame is None and libero.video_frame is not None
    # LIBERO's shared-memory layout without a simulator: cameras at the render size, robot state
    cam = EnvConfig(type="libero", camera_size=64)
    spec = {f.path: f.shape for f in libero.observation_spec(cam)}
    assert spec[("pixels", "image")] == (64, 64, 3) and spec[("robot_state", "joints", "pos")] == (7,)
    big = dataclasses.replace(cam, camera_size=512)
    assert {f.path: f.shape for f in libero.observation_spec(big)}[("pixels", "image2")] == (256, 256, 3)
    assert libero.action_space(cam) == "ee_metres"
    assert libero.action_space(dataclasses.replace(cam, control_mode="relative")) == "plain"
    assert toy.action_space(EnvConfig(type="toy", suite="point_reach")) == "plain"


def test_toy_env_through_its_family() -> None:
    cfg = load_config("toy", {"env.n_envs": 2, "env.task_ids": [1, 3]})
    family = env_family("toy")
    env = family.make(cfg.env, slot_offset=1)
    assert env.task_ids() == [3, 1]  # slot_offset keeps the global slot -> task assignment
    assert env.observation_spec() == family.observation_spec(cfg.env)
    assert family.task_descriptions(cfg.env) == task_descriptions(cfg)
    with pytest.raises(ValueError, match="no cameras"):
        family.make(cfg.env, render_size=64)
    frame = env_family("libero").video_frame({"pixels": {"image": np.zeros((2, 4, 4, 3), np.uint8)}}, 1)
    assert frame.shape == (4, 4, 3)


def test_a_new_env_family_needs_only_its_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The factory, env workers and task descriptions pick a registered family up by name."""
    monkeypatch.setattr(env_registry.ENV_FAMILIES, "_records", dict(env_registry.ENV_FAMILIES._records))
    toy = env_family("toy")
    checked = []
    grid = register_env_family(
        dataclasses.replace(toy, name="grid", install_check=lambda: checked.append(True), default_workers=2)
    )
    assert env_family("grid") is grid
    with pytest.raises(ValueError, match="already registered"):
        register_env_family(dataclasses.replace(toy, name="grid"))
    cfg = load_config("toy", {"env.n_envs": 2})
    cfg.env.type = "grid"
    assert resolve_workers(cfg.env) == 2  # the family's default
    assert resolve_workers(dataclasses.replace(cfg.env, workers=1)) == 1  # an explicit count wins
    assert type(make_local_env(cfg.env)).__name__ == "PointReachEnv"
    assert task_descriptions(cfg) == toy.task_descriptions(cfg.env)
    env = make_env(dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, workers=1)))
    assert checked == [True] and env.num_envs == 2
    env.close()


def test_mlp_and_xvla_are_records_of_the_same_shape() -> None:
    mlp, xvla = policy_family("mlp"), policy_family("xvla")
    assert (mlp.config_sizes, xvla.config_sizes) == (("tiny",), CONFIG_SIZES)
    assert mlp.sft is None and xvla.sft is not None
    assert (mlp.lerobot_type, xvla.lerobot_type) == (None, "xvla")
    assert lerobot_policy_family("xvla") is xvla and lerobot_policy_family("act") is None
    adapter = mlp.make_adapter(load_config("toy"), [])
    assert type(adapter).__name__ == "MLPFlowAdapter"
    assert make_adapter(load_config("toy"), []).state_dict().keys() == adapter.state_dict().keys()


def test_a_new_policy_family_needs_only_its_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        policy_registry.POLICY_FAMILIES, "_records", dict(policy_registry.POLICY_FAMILIES._records)
    )
    mlp = policy_family("mlp")
    calls = []

    def build(cfg, tasks):
        calls.append(tasks)
        return mlp.make_adapter(cfg, tasks)

    policy_registry.register_policy_family(dataclasses.replace(mlp, name="mlp2", make_adapter=build))
    cfg = load_config("toy", {"policy.dtype": "bfloat16"})
    cfg.policy.type = "mlp2"
    adapter = make_adapter(cfg, ["a"])
    assert calls == [["a"]] and str(adapter.compute_dtype) == "torch.bfloat16"


def test_families_register_without_loading_a_simulator_or_lerobot() -> None:
    code = (
        "import sys; import pirl_core.envs, pirl_core.policies\n"
        "from pirl_core.envs.registry import env_families\n"
        "from pirl_core.policies.registry import policy_families\n"
        "print(env_families(), policy_families(), sorted(m for m in ('lerobot', 'libero', 'mujoco',"
        " 'robosuite', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('libero', 'toy') ('mlp', 'pi0', 'pi05', 'xvla') []"


def test_the_shipped_checkpoint_names_the_embedded_tokenizer_step_by_its_import_path() -> None:
    from pirl_core.policies.embedded_tokenizer import EmbeddedTokenizerStep
    from pirl_core.policies.xvla.portable import EMBEDDED_TOKENIZER_CLASS

    assert (
        f"{EmbeddedTokenizerStep.__module__}.{EmbeddedTokenizerStep.__qualname__}" == EMBEDDED_TOKENIZER_CLASS
    )
    shipped = REPO / "pirl_core" / "assets" / "sft" / "libero_object_small" / "policy_preprocessor.json"
    classes = [step.get("class") for step in json.loads(shipped.read_text())["steps"]]
    assert EMBEDDED_TOKENIZER_CLASS in classes
