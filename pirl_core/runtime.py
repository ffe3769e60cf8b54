"""What the learner and the actor must agree on, in one place.

Both processes build the same actor-critic from the same config, move parameters as flat
tensor dicts, and derive rollout randomness and initial states from (seed, actor id, policy
version). Deriving them — rather than drawing from a process-global RNG — is what makes a
resumed run reproduce exactly the rollouts the uninterrupted run would have collected.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from pirl_core.config import RunConfig

if TYPE_CHECKING:
    from pirl_core.rollout import Progress


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def limit_threads() -> None:
    """One torch thread per process unless the user says otherwise: learner and actor share
    the machine, and oversubscribed BLAS threads make both slower."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // 2)))


def derived_seed(*parts: int | str) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def rollout_generator(cfg: RunConfig, actor_id: int, version: int, round_index: int) -> torch.Generator:
    """The only source of sampling noise for one collection round of one actor."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derived_seed(cfg.seed, "rollout", actor_id, version, round_index))
    return gen


def episodes_per_actor(cfg: RunConfig) -> int:
    return math.ceil(cfg.learner.episodes_per_update / cfg.actor.n_actors)


def episode_plan(cfg: RunConfig, actor_id: int, version: int) -> list[int]:
    """Initial-state ids this actor runs for one policy version.

    GRPO needs every group (episodes sharing an initial state) inside one update, so ids
    repeat ``grpo_group_size`` times consecutively; PPO uses distinct ids.
    """
    share = episodes_per_actor(cfg)
    block = version * cfg.actor.n_actors + actor_id
    if cfg.recipe.algorithm == "grpo":
        # Interleaved (g0, g1, ..., g0, g1, ...) so that env slot k keeps meeting the same
        # group, hence the same task: switching a LIBERO slot to another task rebuilds its sim.
        size = cfg.recipe.grpo_group_size
        groups = max(1, share // size)
        return [block * groups + i % groups for i in range(groups * size)]
    return [block * share + i for i in range(share)]


def version_rounds(
    cfg: RunConfig,
    env,
    actor_critic,
    actor_id: int,
    version: int,
    on_progress: Callable[[Progress], None] | None = None,
) -> Iterator[tuple]:
    """This actor's episodes for one policy version, ``env.num_envs`` at a time.

    Yields ``collect_rollouts``'s ``(batch, episode_stats, timing)`` per round. The actor ships
    each round as it comes; the in-process loop concatenates them. One function for both, so the
    tests and benchmarks that use the in-process loop see exactly the actor's rollouts.
    ``on_progress`` sees the whole version's :class:`~pirl_core.rollout.Progress` after every
    chunk: episodes of earlier rounds counted, ``elapsed_s`` since the first round began (the
    sends between rounds included).
    """
    from pirl_core.eval.plan import training_plan
    from pirl_core.rollout import Progress, collect_rollouts

    # evaluation's init states (validation and test) are held out of training (pirl_core/eval/plan.py)
    plan = training_plan(cfg, episode_plan(cfg, actor_id, version), env.num_init_states())
    n_envs = env.num_envs
    started = time.perf_counter()
    steps_before = 0
    for round_index, first in enumerate(range(0, len(plan), n_envs)):
        generator = rollout_generator(cfg, actor_id, version, round_index)
        report = None
        if on_progress is not None:

            def report(p: Progress, first: int = first, steps_before: int = steps_before) -> None:
                on_progress(
                    Progress(
                        episodes_done=first + p.episodes_done,
                        episodes_planned=len(plan),
                        env_steps=steps_before + p.env_steps,
                        elapsed_s=time.perf_counter() - started,
                        running_steps=p.running_steps,
                    )
                )

        # no_grad around the collection only: a generator suspended inside it would leave grad
        # mode off in its caller between rounds (the in-process loop's update would not learn)
        with torch.no_grad():
            result = collect_rollouts(
                env,
                actor_critic,
                plan[first : first + n_envs],
                generator,
                cfg.policy.action_steps,
                on_progress=report,
            )
        steps_before += int(result[2].get("env_steps", 0))
        yield result


FINGERPRINT_KEY = "pirl.frozen_fingerprint"
"""Reserved push entry: the sender's frozen-part fingerprint (sha256 digest as 32 uint8)."""
PUSH_FIX = "start learner and actor with the same --profile and overrides"


def trainable_names(module: torch.nn.Module) -> set[str]:
    """Every state-dict name of a parameter that trains (tied weights under all their names)."""
    return {n for n, p in module.named_parameters(remove_duplicate=False) if p.requires_grad}


def frozen_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every state-dict tensor that does not train (name, dtype, shape, bytes).

    Lean pushes leave these tensors out: the actor uses its own build's copies, so both sides
    must hold the same ones. With random init they are determined by the seed; pretrained, by
    the checkpoint. Taken once at build (``build_actor_critic``): frozen tensors never change."""
    trainable = trainable_names(module)
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name in trainable:
            continue
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _module_fingerprint(module: torch.nn.Module) -> str:
    cached = getattr(module, "frozen_fingerprint", None)
    return cached if isinstance(cached, str) else frozen_fingerprint(module)


def push_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype the actor samples in (None: as stored, float32)."""
    adapter = getattr(module, "adapter", None)
    return getattr(adapter, "compute_dtype", None)


def parameters_to_tensors(module: torch.nn.Module) -> dict[str, Tensor]:
    """One lean parameter push: the tensors that train, cast to the dtype the actor samples in,
    plus the sender's frozen-part fingerprint. Flat, contiguous CPU copies for the wire
    (safetensors refuses shared or strided storage)."""
    trainable = trainable_names(module)
    dtype = push_dtype(module)
    tensors: dict[str, Tensor] = {}
    for name, tensor in module.state_dict().items():
        if name not in trainable:
            continue
        t = tensor.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.to("cpu").contiguous().clone()
    digest = bytes.fromhex(_module_fingerprint(module))
    tensors[FINGERPRINT_KEY] = torch.tensor(list(digest), dtype=torch.uint8)
    return tensors


def push_nbytes(tensors: dict[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def load_parameters(module: torch.nn.Module, tensors: dict[str, Tensor]) -> None:
    """Load a lean push into the actor's policy; refuse one built from other frozen tensors or
    carrying other trainable tensors (TransportError, exit 5). bf16 values are widened into the
    float32 parameters, exactly the rounding the learner's autocast applies to them."""
    from pirl_core.errors import TransportError

    tensors = dict(tensors)
    found = tensors.pop(FINGERPRINT_KEY, None)
    expected = _module_fingerprint(module)
    found_hex = bytes(found.tolist()).hex() if found is not None else "(none)"
    if found_hex != expected:
        raise TransportError(
            f"parameter push refused: frozen-part fingerprint expected {expected[:16]}, found "
            f"{found_hex[:16]} (learner and actor froze different tensors or built them from another "
            f"seed/checkpoint/recipe.train_vlm); {PUSH_FIX}"
        )
    wanted = trainable_names(module)
    missing, unexpected = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
    if missing or unexpected:
        raise TransportError(
            f"parameter push does not match this actor's policy (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}); {PUSH_FIX}"
        )
    try:
        module.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise TransportError(
            f"parameter push does not fit this actor's policy ({first}); {PUSH_FIX}"
        ) from exc
