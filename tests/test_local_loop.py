"""The in-process loop (tests/inprocess/local_loop.py) evaluates on init states its training never
runs, the way a run's periodic evaluation holds them out (pirl_core/init_states.py) — also on an
env with few init states, where ids "far above" the training ids wrap onto them (LIBERO: 50 per
task, and 10,000,000 + i is i modulo 50)."""

from __future__ import annotations

import pytest

from pirl_core import rollout_plan
from pirl_core.config import load_config
from pirl_core.envs.factory import make_env
from tests.inprocess import local_loop

INIT_STATES_PER_TASK = 50  # LIBERO's


def test_evaluation_states_never_reach_training_when_ids_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config("toy", {"learner.episodes_per_update": 16, "env.n_envs": 8, "env.task_ids": [0, 1]})
    n_init = INIT_STATES_PER_TASK * len(cfg.env.task_ids)

    def few_states_env(run_cfg):
        env = make_env(run_cfg)
        env.num_init_states = lambda: n_init  # ids wrap modulo n_init, as LIBERO's do
        return env

    runs: dict[bool, set[int]] = {True: set(), False: set()}  # deterministic (evaluation) or not
    real = rollout_plan.collect_rollouts

    def recording(env, actor_critic, ids, *args, deterministic: bool = False, **kwargs):
        runs[deterministic].update(g % n_init for g in ids)
        return real(env, actor_critic, ids, *args, deterministic=deterministic, **kwargs)

    monkeypatch.setattr(local_loop, "make_env", few_states_env)
    monkeypatch.setattr(local_loop, "collect_rollouts", recording)
    monkeypatch.setattr(rollout_plan, "collect_rollouts", recording)
    history = local_loop.train_in_process(cfg, 4, eval_every=2, eval_episodes=6, final_eval_episodes=8)
    assert len(history) == 3 and "final_eval_success" in history[-1]
    evaluated, trained = runs[True], runs[False]
    assert len(evaluated) == 8 and len(trained) == 4 * 16
    assert not evaluated & trained, sorted(evaluated & trained)
    # the held-out states are the last ones of every task, both tasks alike (state-major ids)
    per_task = {(g // 2) for g in evaluated}
    assert per_task == {INIT_STATES_PER_TASK - 4 + i for i in range(4)}
    assert {g % 2 for g in evaluated} == {0, 1}


def test_evaluating_more_episodes_than_held_out_is_refused() -> None:
    cfg = load_config("toy", {"env.n_envs": 4})
    state = local_loop.build_loop(cfg, eval_episodes=4)
    try:
        assert local_loop.eval_ids(state.cfg, state.env.num_init_states(), 4)
        with pytest.raises(ValueError, match=r"build_loop\(\.\.\., eval_episodes=5\)"):
            local_loop.evaluate(state, 5)
    finally:
        state.env.close()
