"""Which initial states an evaluation runs, and how training keeps its hands off them.

Global init-state ids are the envs' (``PirlVectorEnv.num_init_states()`` = N; ids wrap modulo N):
for LIBERO, with T configured tasks, id ``g`` is task ``task_ids[g % T]`` and per-task init state
``(g // T) % n_init`` (N = T * n_init); the toy env draws its start from ``(task, g)``.

The split (docs/design.md, "Evaluation"): with periodic evaluation on (``eval.every > 0``) the
*last* ``E = eval.episodes_per_task`` per-task init states are held out, i.e. the global ids
``[N - E*T, N)``; training maps every planned id ``g`` to ``g mod (N - E*T)``. ``N - E*T`` is a
multiple of T, so the task of an id (``g % T``) is unchanged: only its init state moves into
``[0, n_init - E)``. With evaluation off, E = 0 and training ids are untouched (``g mod N``, which
the env applies anyway).

The split (``env.train_init_states``, ``eval.val_init_states``, ``eval.test_init_states``; per-task
indices, disjoint, validated in ``pirl_core/config.py``): when any is set, training draws only from
the train states (default: every state in neither validation nor test), periodic evaluation and
``checkpoints/best`` use the validation states, and the test states are left for the final claim
(``benchmarks/libero_lift.py``), which nothing during a run ever selects on. Training id ``g``
then runs task ``g % T`` on train state ``train[(g // T) % len(train)]``.
"""

from __future__ import annotations

from pirl_core.config import RunConfig, split_states
from pirl_core.errors import ConfigError


def held_out_per_task(cfg: RunConfig) -> int:
    """Per-task init states reserved for periodic evaluation (0 when it is off)."""
    return cfg.eval.episodes_per_task if cfg.eval.every > 0 else 0


def _per_task(num_init_states: int, n_tasks: int, field: str, wanted: int) -> int:
    per_task = num_init_states // n_tasks
    if wanted >= per_task:
        raise ConfigError(
            field, wanted, f"< {per_task} (the init states per task: some must stay for training)"
        )
    return per_task


def split_configured(cfg: RunConfig) -> bool:
    return any(split_states(cfg).values())


def _in_range(states: list[int], per_task: int, field: str, spec: str) -> list[int]:
    if states and states[-1] >= per_task:
        raise ConfigError(
            field, spec, f"per-task init-state indices in [0, {per_task - 1}] (this env has {per_task})"
        )
    return states


def split_for(cfg: RunConfig, num_init_states: int) -> dict[str, list[int]]:
    """{"train", "val", "test"} per-task indices, checked against the env's init states; train
    defaults to every state in neither validation nor test."""
    per_task = num_init_states // len(cfg.env.task_ids)
    parsed = split_states(cfg)
    specs = (cfg.env.train_init_states, cfg.eval.val_init_states, cfg.eval.test_init_states)
    train, val, test = (
        _in_range(states, per_task, name, spec)
        for (name, states), spec in zip(parsed.items(), specs, strict=True)
    )
    if not train:
        train = [s for s in range(per_task) if s not in set(val) | set(test)]
    if not train:
        raise ConfigError(
            "env.train_init_states", cfg.env.train_init_states, "at least one training init state"
        )
    return {"train": train, "val": val, "test": test}


def training_plan(cfg: RunConfig, plan: list[int], num_init_states: int) -> list[int]:
    """The init-state ids training runs for an episode plan: the train split when the states are
    split, else everything but periodic evaluation's held-out states."""
    n_tasks = len(cfg.env.task_ids)
    if not split_configured(cfg):
        return training_ids(plan, num_init_states, n_tasks, held_out_per_task(cfg))
    train = split_for(cfg, num_init_states)["train"]
    return [train[(g // n_tasks) % len(train)] * n_tasks + g % n_tasks for g in plan]


def validation_states(cfg: RunConfig, num_init_states: int) -> list[int]:
    """Per-task indices periodic evaluation (and so ``best``) runs: the validation split, else the
    last ``eval.episodes_per_task`` states."""
    if split_configured(cfg):
        return split_for(cfg, num_init_states)["val"]
    return held_out_states(num_init_states, len(cfg.env.task_ids), cfg.eval.episodes_per_task)


def training_ids(plan: list[int], num_init_states: int, n_tasks: int, held_out: int) -> list[int]:
    """Training's init-state ids with the held-out ones removed (see the module docstring)."""
    if held_out == 0:
        return list(plan)
    _per_task(num_init_states, n_tasks, "eval.episodes_per_task", held_out)
    usable = num_init_states - held_out * n_tasks
    return [g % usable for g in plan]


def state_ids(num_init_states: int, n_tasks: int, per_task_states: list[int]) -> list[int]:
    """Global ids for per-task init states ``per_task_states`` of every task, state-major
    (``s0 t0, s0 t1, ..., s1 t0, ...``): position p runs task p % T, so a vector env whose
    ``n_envs`` is a multiple of T keeps each slot on one task (no LIBERO rebuilds)."""
    per_task = num_init_states // n_tasks
    for s in per_task_states:
        if not 0 <= s < per_task:
            raise ConfigError("--init-states", per_task_states, f"init-state indices in [0, {per_task - 1}]")
    return [s * n_tasks + j for s in per_task_states for j in range(n_tasks)]


def held_out_states(num_init_states: int, n_tasks: int, count: int) -> list[int]:
    """Per-task indices of the held-out init states: the last ``count``."""
    per_task = _per_task(num_init_states, n_tasks, "eval.episodes_per_task", count)
    return list(range(per_task - count, per_task))


def select_states(spec: str, episodes: int, num_init_states: int, n_tasks: int) -> list[int]:
    """``--init-states``: ``first`` (indices 0..episodes-1, what lerobot-eval runs), ``held-out``
    (the last ``episodes``: periodic evaluation's), or a comma list of indices."""
    if spec == "first":
        per_task = num_init_states // n_tasks
        if episodes > per_task:
            raise ConfigError("--episodes", episodes, f"<= {per_task} (init states per task)")
        return list(range(episodes))
    if spec == "held-out":
        return held_out_states(num_init_states, n_tasks, episodes)
    try:
        chosen = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        chosen = []
    if not chosen:
        raise ConfigError("--init-states", spec, "'first', 'held-out' or a comma list of indices like 0,3,7")
    return chosen
