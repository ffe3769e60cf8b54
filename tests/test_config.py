"""Profiles load strictly: every bad input names the field, the value and what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pirl_core.config import (
    RunConfig,
    available_profiles,
    config_from_dict,
    load_config,
    parse_override,
)
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.policies.xvla.hub import local_checkpoint_dir


def test_shipped_profiles_load_and_smoke_starts_from_the_shipped_sft_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {"smoke", "libero_small", "libero_tiny", "bench", "toy"} <= set(available_profiles())
    smoke = load_config()
    assert smoke.profile == "smoke"
    assert smoke.env.type == "libero" and smoke.env.suite == "libero_object"
    assert smoke.policy.type == "xvla" and smoke.policy.size == "pretrained"
    # a path inside the source tree, resolved from any working directory, small enough to commit
    monkeypatch.chdir(tmp_path)
    shipped = local_checkpoint_dir(smoke.policy.pretrained_path)
    assert shipped.is_absolute() and (shipped / "config.json").is_file()
    assert (shipped / "model.safetensors").stat().st_size < 5 * 2**20
    small = load_config("libero_small")
    assert small.policy.pretrained_path == smoke.policy.pretrained_path
    assert set(smoke.env.task_ids) <= set(small.env.task_ids)
    bench = load_config("bench")
    assert bench.policy.pretrained_path == "lerobot/xvla-libero"


def test_overrides_are_typed_and_applied() -> None:
    cfg = load_config(
        "smoke",
        ["env.suite=libero_spatial", "learner.updates=5", "env.task_ids=[1, 2]", "recipe.lr=1e-3", "seed=7"],
    )
    assert cfg.env.suite == "libero_spatial"
    assert cfg.learner.updates == 5
    assert cfg.env.task_ids == [1, 2]
    assert cfg.recipe.lr == pytest.approx(1e-3)
    assert cfg.seed == 7


def test_integer_literal_is_accepted_for_float_fields() -> None:
    assert load_config("smoke", ["recipe.clip=0.3", "recipe.grad_clip=1"]).recipe.grad_clip == 1.0


@pytest.mark.parametrize(
    ("override", "field", "expected_fragment"),
    [
        ("env.suite=libero_99", "env.suite", "libero_10"),
        ("env.nope=1", "env.nope", "known key"),
        ("nope.key=1", "nope.key", "known key"),
        ("learner.updates=many", "learner.updates", "an integer"),
        ("learner.updates=0", "learner.updates", ">= 1"),
        ("recipe.method=flow_magic", "recipe.method", "flow_noise"),
        ("env.task_ids=[42]", "env.task_ids", "[0, 9]"),
        ("policy.action_steps=99", "policy.action_steps", "chunk_size"),
        ("recipe.critic_detach=maybe", "recipe.critic_detach", "true or false"),
        # issue 8: these ran to exit 0 and saved NaN checkpoints
        ("recipe.lr=inf", "recipe.lr", "a finite number"),
        ("recipe.entropy_coef=nan", "recipe.entropy_coef", "a finite number"),
        ("recipe.sigma_max=inf", "recipe.sigma_max", "a finite number"),
        ("recipe.sigma_min=-inf", "recipe.sigma_min", "a finite number"),
        ("actor.connect_timeout_s=inf", "actor.connect_timeout_s", "a finite number"),
        ("recipe.lr=1" + "0" * 400, "recipe.lr", "a finite number"),  # an int no float can hold
        ("recipe.sigma_max=50", "recipe.sigma_max", "10"),
        ("recipe.sde_noise_level=1e6", "recipe.sde_noise_level", "10"),
        ("recipe.lr=5", "recipe.lr", "[0, 1]"),
        ("recipe.value_lr=-1e-3", "recipe.value_lr", "[0, 1]"),
        ("recipe.entropy_coef=-0.1", "recipe.entropy_coef", ">= 0"),
        ("recipe.ratio_tolerance=0", "recipe.ratio_tolerance", "> 0"),
    ],
)
def test_bad_overrides_name_field_value_and_allowed(
    override: str, field: str, expected_fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("smoke", [override])
    err = info.value
    assert err.field == field
    assert err.exit_code == ExitCode.USAGE
    assert expected_fragment in err.expected
    assert field in err.line() and "expected" in err.line()


def test_unknown_profile_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("nosuchprofile")
    assert "smoke" in info.value.expected and "bench" in info.value.expected


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="existing .toml file"):
        load_config(str(tmp_path / "absent.toml"))


def test_profile_file_with_unknown_key_and_wrong_type(tmp_path: Path) -> None:
    bad_key = tmp_path / "bad_key.toml"
    bad_key.write_text("[env]\nsuit = 'libero_10'\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad_key))
    assert info.value.field == "env.suit"

    bad_type = tmp_path / "bad_type.toml"
    bad_type.write_text("[learner]\nupdates = '3'\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad_type))
    assert info.value.field == "learner.updates"

    broken = tmp_path / "broken.toml"
    broken.write_text("[env\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(str(broken))


def test_grpo_needs_whole_groups() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            "smoke", ["recipe.algorithm=grpo", "recipe.grpo_group_size=3", "learner.episodes_per_update=4"]
        )
    assert info.value.field == "learner.episodes_per_update"


def test_round_trip_through_dict_is_lossless() -> None:
    cfg = load_config("smoke", ["recipe.method=flow_sde"])
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)


def test_parse_override_accepts_bare_strings_and_toml_literals() -> None:
    assert parse_override("--output_dir=outputs/x") == ("output_dir", "outputs/x")
    assert parse_override("env.task_ids=[0,1]") == ("env.task_ids", [0, 1])
    assert parse_override("recipe.include_prior=true") == ("recipe.include_prior", True)
    with pytest.raises(ConfigError):
        parse_override("env.suite")


def test_defaults_validate() -> None:
    from pirl_core.config import validate

    assert validate(RunConfig()).env.suite == "libero_10"


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "+inf"])
def test_no_float_field_accepts_nan_or_inf(raw: str) -> None:
    """Every float field, not a list: a field added later is covered by the same _coerce."""
    cfg = RunConfig()
    sections = [getattr(cfg, f.name) for f in dataclasses.fields(cfg)]
    floats = [
        f"{type(section).__name__.removesuffix('Config').lower()}.{f.name}"
        for section in sections
        if dataclasses.is_dataclass(section)
        for f in dataclasses.fields(section)
        if f.type == "float"  # annotations are strings (from __future__ import annotations)
    ]
    assert "recipe.lr" in floats and "actor.connect_timeout_s" in floats
    for name in floats:
        with pytest.raises(ConfigError) as info:
            load_config("toy", [f"{name}={raw}"])
        assert info.value.field == name and info.value.expected == "a finite number"
