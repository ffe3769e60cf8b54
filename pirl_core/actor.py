"""``python -m pirl_core.actor``: owns the simulators, collects rollouts for the learner.

Per policy version: receive parameters -> run this actor's share of episodes (initial states
and sampling noise derived from seed, actor id and version) -> send the chunk-level
transitions (tagged with the version) and the episode stats -> wait for the next version.
The actor needs no resume flag: a resumed learner pushes the restored parameters and version.
It exits 0 only when the learner finished the run; a learner that was interrupted or terminated
makes it exit with the same code (130/143), one that failed with 5; SIGINT/SIGTERM stop it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pirl_core.cli import parse_args, run_main
from pirl_core.config import RunConfig
from pirl_core.errors import ExitCode, LearnerStoppedError, PirlError
from pirl_core.eval import periodic as periodic_eval
from pirl_core.lifecycle import stop_at_once_on_signals
from pirl_core.progress import ProgressReporter
from pirl_core.recipe.actor_critic import actor_critic_for
from pirl_core.rollout import Progress, time_breakdown
from pirl_core.rollout_plan import version_rounds
from pirl_core.seeding import limit_threads, seed_everything
from pirl_core.sinks import open_telemetry
from pirl_core.telemetry import Telemetry, run_record
from pirl_core.transport.push import load_parameters
from pirl_core.transport.round_header import RoundHeader

LEARNER_STOP_CODES = {"interrupted": ExitCode.INTERRUPTED, "terminated": ExitCode.TERMINATED}


def collect_version(
    cfg,
    env,
    actor_critic,
    client,
    actor_id: int,
    version: int,
    telemetry: Telemetry,
    learner_epoch: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> None:
    """Run this actor's episodes for one policy version and ship them, one payload per round.
    ``on_progress`` sees the version's progress after every chunk (a :class:`ProgressReporter`
    throttles it into telemetry and heartbeats)."""
    stats_all = []
    env_steps = 0
    inference_ms = []
    started = round_started = time.monotonic()
    time_totals: dict[str, float] = {}
    rounds = version_rounds(cfg, env, actor_critic, actor_id, version, on_progress)
    for round_index, (batch, stats, timing) in enumerate(rounds):
        header = RoundHeader.for_round(version, actor_id, round_index, stats, learner_epoch)
        send_started = time.monotonic()
        client.send_rollout(batch.to_tensors(), header.to_wire())
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


def make_client(cfg: RunConfig, actor_id: int):
    """Client that announces this actor's run id and identity and carries the token / trusts the CA."""
    from pirl_core.checkpoints.identity import actor_identity
    from pirl_core.runid import run_id
    from pirl_core.transport.auth import resolve_token, trusted_ca
    from pirl_core.transport.client import ActorClient

    return ActorClient(
        cfg.learner.host,
        cfg.learner.port,
        actor_id,
        cfg.actor.connect_timeout_s,
        identity=actor_identity(cfg),
        run_id=run_id(cfg),
        auth_token=resolve_token(cfg.learner),
        tls_ca=trusted_ca(cfg.learner),
    )


def learner_stopped(reason: str, step: int) -> LearnerStoppedError:
    """The actor's exit when the learner stopped early: the learner's code (5 when it failed:
    its own log says why) and what to do."""
    if reason in LEARNER_STOP_CODES:
        what, code = f"was {reason}", LEARNER_STOP_CODES[reason]
    else:
        what, code = "stopped with an error (see its log)", ExitCode.TRANSPORT
    return LearnerStoppedError(
        f"learner {what} at step {step}; resume it with --resume, then restart this actor", code
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args("python -m pirl_core.actor", argv)
    with stop_at_once_on_signals():
        return _collect(args.config, args.actor_id)


def _collect(cfg: RunConfig, actor_id: int) -> int:
    limit_threads()
    seed_everything(cfg.seed + actor_id)

    from pirl_core.behaviour import apply_behaviour
    from pirl_core.checkpoints.identity import behaviour
    from pirl_core.envs.factory import make_env

    telemetry = open_telemetry(cfg, f"actor-{actor_id}")
    telemetry.event("run", echo=False, **run_record(cfg, actor_id=actor_id))
    env = make_env(cfg)  # first: env workers start in the background while the policy builds
    actor_critic = actor_critic_for(cfg)  # the learner's (weights arrive with the first push)
    client = make_client(cfg, actor_id)
    # in-round progress, throttled: to the console (telemetry) and the learner (heartbeat)
    progress = ProgressReporter(
        telemetry, cfg.actor.progress_every_s, env.max_episode_steps, heartbeat=client.heartbeat
    )
    version = -1
    run_cfg = cfg  # the actor's flags plus the learner's pushed behaviour settings
    try:
        telemetry.event("connecting", host=cfg.learner.host, port=cfg.learner.port)
        client.wait_for_learner()
        telemetry.event("connected", host=cfg.learner.host, port=cfg.learner.port)
        while True:
            header, tensors = client.receive_parameters(min_version=version + 1)
            if header.get("done"):
                reason = str(header.get("reason", "done"))
                telemetry.event("learner_done", max(version, 0), reason=reason)
                if reason != "done":
                    raise learner_stopped(reason, int(header.get("step", header.get("version", 0))))
                break
            version = int(header["version"])
            load_parameters(actor_critic, tensors)
            actor_critic.adapter.set_rl_mode()
            adopted = apply_behaviour(run_cfg, actor_critic, header.get("behaviour"), actor_id)
            if adopted is not run_cfg:  # the learner's settings differ from what this actor used so far
                before = behaviour(run_cfg)
                changed = {k: v for k, v in behaviour(adopted).items() if before[k] != v}
                telemetry.event("behaviour", version, version=version, changed=changed)
            run_cfg = adopted
            if periodic_eval.due(run_cfg, actor_id, version):
                periodic_eval.evaluate_version(
                    run_cfg, env, actor_critic, version, telemetry, heartbeat=client.heartbeat
                )
            collect_version(
                run_cfg,
                env,
                actor_critic,
                client,
                actor_id,
                version,
                telemetry,
                header.get("learner_epoch"),
                on_progress=progress.for_version(version),
            )
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
