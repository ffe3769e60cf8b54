"""The honest init-state split: train / validation / test states are parsed and checked disjoint
in one place (config), training draws only from train, periodic evaluation (and so ``best``) only
from validation, and the lift benchmark evaluates validation and test separately."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pirl_core.config import load_config, parse_init_states, split_states
from pirl_core.errors import ConfigError
from pirl_core.eval.periodic import periodic_ids
from pirl_core.init_states import split_for, training_plan, validation_states

REPO = Path(__file__).resolve().parents[1]
PER_TASK, TASKS = 50, 3  # libero_object: 50 fixed init states per task; libero_small runs 3 tasks


def test_specs_parse_to_per_task_indices() -> None:
    assert parse_init_states("0-29", "f") == list(range(30))
    assert parse_init_states("30-34, 38", "f") == [30, 31, 32, 33, 34, 38]
    assert parse_init_states("", "f") == []
    for bad in ("a-b", "5-3", "-1", "1-", "0-29;40"):
        with pytest.raises(ConfigError, match="env.train_init_states"):
            load_config("toy", {"env.train_init_states": bad})


def test_overlap_is_an_error_naming_both_fields() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("toy", {"env.train_init_states": "0-30", "eval.val_init_states": "30-39"})
    assert "env.train_init_states" in str(err.value) and "eval.val_init_states" in str(err.value)
    assert "[30]" in str(err.value)
    with pytest.raises(ConfigError, match="eval.val_init_states.*eval.test_init_states"):
        load_config("toy", {"eval.val_init_states": "30-40", "eval.test_init_states": "40-49"})


def test_a_split_with_periodic_evaluation_needs_validation_states() -> None:
    # periodic evaluation would otherwise fall back to the last states, i.e. select on test
    with pytest.raises(ConfigError, match="eval.val_init_states"):
        load_config("toy", {"eval.test_init_states": "40-49", "eval.every": 10, "checkpoint.every": 10})
    load_config("toy", {"eval.test_init_states": "40-49"})  # no periodic evaluation: fine


def test_libero_small_declares_the_split() -> None:
    split = split_states(load_config("libero_small"))
    assert split == {
        "env.train_init_states": list(range(30)),
        "eval.val_init_states": list(range(30, 40)),
        "eval.test_init_states": list(range(40, 50)),
    }


def _cfg(**split: str):
    overrides = {"env.task_ids": [0, 1, 2], "eval.every": 10, "checkpoint.every": 10}
    return load_config("toy", {**overrides, **split})


def test_training_draws_only_train_states_and_keeps_each_ids_task() -> None:
    cfg = _cfg(
        **{"env.train_init_states": "0-29", "eval.val_init_states": "30-39", "eval.test_init_states": "40-49"}
    )
    plan = list(range(1000))
    ids = training_plan(cfg, plan, PER_TASK * TASKS)
    assert [g % TASKS for g in ids] == [g % TASKS for g in plan]
    assert {g // TASKS for g in ids} == set(range(30))
    # default train: everything outside validation and test
    cfg = _cfg(**{"eval.val_init_states": "30-39", "eval.test_init_states": "40-49"})
    assert {g // TASKS for g in training_plan(cfg, plan, PER_TASK * TASKS)} == set(range(30))
    assert split_for(cfg, PER_TASK * TASKS)["train"] == list(range(30))


def test_periodic_evaluation_and_best_use_validation_states() -> None:
    class Env:
        def num_init_states(self) -> int:
            return PER_TASK * TASKS

    cfg = _cfg(**{"eval.val_init_states": "30-39", "eval.test_init_states": "40-49"})
    assert validation_states(cfg, PER_TASK * TASKS) == list(range(30, 40))
    assert sorted({g // TASKS for g in periodic_ids(cfg, Env())}) == list(range(30, 40))
    legacy = _cfg()  # no split: the last eval.episodes_per_task states, as before
    assert validation_states(legacy, PER_TASK * TASKS) == list(range(45, 50))


def test_states_beyond_the_env_are_an_error_naming_the_field() -> None:
    cfg = _cfg(**{"eval.val_init_states": "30-39", "eval.test_init_states": "45-55"})
    with pytest.raises(ConfigError, match="eval.test_init_states"):
        split_for(cfg, PER_TASK * TASKS)


def _lift():
    spec = importlib.util.spec_from_file_location("libero_lift", REPO / "benchmarks" / "libero_lift.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("libero_lift", module)
    spec.loader.exec_module(sys.modules["libero_lift"])
    return sys.modules["libero_lift"]


def test_lift_benchmark_evaluates_validation_and_test_and_records_demos_on_train() -> None:
    lift = _lift()
    cfg = load_config("libero_small")
    assert lift.eval_splits(cfg) == {"val": list(range(30, 40)), "test": list(range(40, 50))}
    assert lift.demo_first_state(cfg, 20) == 0
    with pytest.raises(SystemExit, match="consecutive training init states"):
        lift.demo_first_state(cfg, 31)
    unsplit = load_config("smoke")
    assert lift.eval_splits(unsplit) == {"held-out": None}


def test_grpo_groups_share_one_fixed_train_state() -> None:
    from pirl_core.rollout_plan import episode_plan

    cfg = load_config(
        "toy",
        {
            "recipe.algorithm": "grpo",
            "recipe.grpo_group_size": 8,
            "learner.episodes_per_update": 64,
            "env.task_ids": [0, 1, 2, 3],
            "env.train_init_states": "0-29",
        },
    )
    for version in range(3):
        plan = episode_plan(cfg, 0, version)
        ids = training_plan(cfg, plan, PER_TASK * 4)
        groups: dict[int, set[int]] = {}
        for g, mapped in zip(plan, ids, strict=True):
            groups.setdefault(g, set()).add(mapped)
        assert len(groups) == 8 and all(len(members) == 1 for members in groups.values())
        assert all(next(iter(m)) // 4 in range(30) for m in groups.values())
