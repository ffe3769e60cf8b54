"""``python -m pirl_core.actor``: owns the simulators, collects rollouts for the learner.

Per policy version: receive parameters -> run this actor's share of episodes (initial states
and sampling noise derived from seed, actor id and version) -> send the chunk-level
transitions (tagged with the version) and the episode stats -> wait for the next version.
The actor needs no resume flag: a resumed learner pushes the restored parameters and version.
"""

from __future__ import annotations

import time

from pirl_core.cli import parse_args, run_main
from pirl_core.config import RunConfig
from pirl_core.errors import ExitCode, PirlError
from pirl_core.rollout import time_breakdown
from pirl_core.runtime import limit_threads, load_parameters, seed_everything, version_rounds
from pirl_core.telemetry import Telemetry


def build_policy(cfg: RunConfig):
    """The same actor-critic the learner trains (weights arrive with the first push)."""
    from pirl_core.envs.factory import task_descriptions
    from pirl_core.policies.factory import make_adapter
    from pirl_core.recipe.actor_critic import build_actor_critic

    adapter = make_adapter(cfg, task_descriptions(cfg))
    return build_actor_critic(adapter, cfg.recipe, seed=cfg.seed)


def collect_version(
    cfg, env, actor_critic, client, actor_id: int, version: int, telemetry: Telemetry
) -> None:
    """Run this actor's episodes for one policy version and ship them, one payload per round."""
    stats_all = []
    env_steps = 0
    inference_ms = []
    started = round_started = time.monotonic()
    time_totals: dict[str, float] = {}
    rounds = version_rounds(cfg, env, actor_critic, actor_id, version)
    for round_index, (batch, stats, timing) in enumerate(rounds):
        send_started = time.monotonic()
        header = {"version": version, "actor_id": actor_id, "episodes": len(stats), "round": round_index}
        client.send_rollout(batch.to_tensors(), header)
        client.send_interactions(
            [
                {
                    "version": version,
                    "actor_id": actor_id,
                    "return": s.ret,
                    "length": s.length,
                    "success": float(s.success),
                    "task_id": s.task_id,
                    "init_state_id": s.init_state_id,
                }
                for s in stats
            ]
        )
        now = time.monotonic()
        breakdown = time_breakdown(timing, send_s=now - send_started, round_s=now - round_started)
        round_started = now
        telemetry.event("round_time", version, echo=False, round=round_index, **breakdown)
        time_totals = {k: time_totals.get(k, 0.0) + v for k, v in breakdown.items()}
        stats_all.extend(stats)
        env_steps += int(timing.get("env_steps", 0))
        inference_ms.append(float(timing.get("inference_ms_per_chunk", 0.0)))
    elapsed = max(time.monotonic() - started, 1e-9)
    n = max(len(stats_all), 1)
    telemetry.metrics(
        version,
        headline=("episodes", "success_rate", "return_mean", "env_steps_per_s", "inference_ms", "collect_s"),
        version=version,
        episodes=len(stats_all),
        success_rate=sum(float(s.success) for s in stats_all) / n,
        return_mean=sum(s.ret for s in stats_all) / n,
        env_steps=env_steps,
        env_steps_per_s=env_steps / elapsed,
        inference_ms=sum(inference_ms) / max(len(inference_ms), 1),
        collect_s=elapsed,
        **time_totals,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args("python -m pirl_core.actor", argv)
    cfg = args.config
    actor_id = args.actor_id
    limit_threads()
    seed_everything(cfg.seed + actor_id)

    from pirl_core.envs.factory import make_env
    from pirl_core.transport.client import ActorClient

    telemetry = Telemetry(cfg.output_dir, f"actor-{actor_id}")
    actor_critic = build_policy(cfg)
    env = make_env(cfg)
    client = ActorClient(cfg.learner.host, cfg.learner.port, actor_id, cfg.actor.connect_timeout_s)
    version = -1
    try:
        telemetry.event("connecting", host=cfg.learner.host, port=cfg.learner.port)
        client.wait_for_learner()
        telemetry.event("connected", host=cfg.learner.host, port=cfg.learner.port)
        while True:
            header, tensors = client.receive_parameters(min_version=version + 1)
            if header.get("done"):
                telemetry.event("learner_done", max(version, 0), reason=header.get("reason", "done"))
                break
            version = int(header["version"])
            load_parameters(actor_critic, tensors)
            actor_critic.adapter.set_rl_mode()
            collect_version(cfg, env, actor_critic, client, actor_id, version, telemetry)
    except PirlError as err:  # recorded for the console; run_main prints it and exits with its code
        telemetry.error(err.message, max(version, 0), exit_code=int(err.exit_code))
        raise
    finally:
        client.close()
        env.close()
        telemetry.close()
    return ExitCode.OK


if __name__ == "__main__":
    run_main(main)
