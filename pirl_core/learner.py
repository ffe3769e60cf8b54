"""``python -m pirl_core.learner``: the gRPC server that owns the optimiser and checkpoints.

The loop is deliberately plain: publish parameters (version v) -> gather the episodes that
version produced -> one PPO/GRPO update -> v+1 -> checkpoint on cadence. Batches from older
versions are dropped and counted unless ``learner.max_staleness`` allows them; that keeps the
update on-policy, which the ratio-equals-one check then enforces every update (exit 5 above
``recipe.ratio_tolerance``). Lifecycle (docs/design.md, "Lifecycle"): one learner per output dir
(``.learner.lock``); SIGINT/SIGTERM stop at the next safe point with a checkpoint (exit 130/143);
nothing is saved at step 0 or from an update that diverged or failed its ratio check.
Under ``torchrun`` (pirl_core.distributed) this is rank 0; the other ranks only train.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pirl_core import sinks
from pirl_core.checkpoints import identity, layout, resume
from pirl_core.checkpoints.lock import OutputDirLock
from pirl_core.cli import parse_args, run_main
from pirl_core.config import RunConfig
from pirl_core.distributed import Distributed, RankFailedError, follow
from pirl_core.errors import DivergedError, ExitCode, PirlError, RatioCheckError, TransportError
from pirl_core.lifecycle import StopRequest
from pirl_core.rollout import RolloutBatch, concat
from pirl_core.rollout_plan import episode_plan
from pirl_core.seeding import limit_threads, seed_everything
from pirl_core.storage import from_os_error
from pirl_core.telemetry import Telemetry, run_record
from pirl_core.transport.push import parameters_to_tensors
from pirl_core.transport.round_header import EpisodeRecord, RoundHeader, episode_summary

WAITING_NOTICE_S = 30.0
# A missing actor heard from (heartbeat or round) this recently is "busy" in the waiting notice,
# otherwise "silent". Collecting actors beat every actor.progress_every_s, evaluating ones per wave.
BUSY_WITHIN_S = 30.0
LEARNER_HEADLINE = (
    "version",
    "samples",
    "policy_loss",
    "value_loss",
    "approx_kl",
    "clip_frac",
    "ratio_check",
    "entropy",
    "grad_norm",
    "success_rate",
    "action_drift_xyz_mm",
    "action_drift_xyz_mm_start",
    "update_s",
)


@dataclass
class Progress:
    """Counters that survive a resume (saved in training_step.json)."""

    step: int = 0
    version: int = 0
    samples: int = 0
    episodes: int = 0
    dropped_stale: int = 0

    def counters(self) -> dict[str, int]:
        return asdict(self)


class ActorLostError(TransportError):
    """An expected actor went silent for ``learner.actor_timeout_s`` (exit 5)."""


@dataclass
class Gathered:
    """One version's rollouts as the update takes them: the batch, ordered by (version, actor,
    round), and the episode records of the rounds in it (the episodes trained on)."""

    batch: RolloutBatch
    records: list[EpisodeRecord]

    @property
    def episodes(self) -> int:
        return len(self.records)

    def episode_stats(self) -> dict[str, float]:
        """Success and return of the episodes trained on."""
        return episode_summary(self.records)


@dataclass
class ActorWait:
    """One version's wait for rollouts: each actor's share, what it delivered, when it was heard
    from, and when the next waiting notice is due."""

    share: dict[int, int]
    started: float
    got: dict[int, int]  # this version's episodes per actor
    last_heard: dict[int, float]  # the lost-actor clock: the start, a delivery or a heartbeat
    heard_at: dict[int, float]  # actual contact only (busy vs silent)
    notice_at: float
    episodes: int = 0  # accepted so far, stale rounds that ``max_staleness`` admits included

    @classmethod
    def start(cls, share: dict[int, int], now: float) -> ActorWait:
        return cls(
            share,
            now,
            got=dict.fromkeys(share, 0),
            last_heard=dict.fromkeys(share, now),
            heard_at=dict.fromkeys(share, float("-inf")),
            notice_at=now + WAITING_NOTICE_S,
        )

    @property
    def wanted(self) -> int:
        return sum(self.share.values())

    def missing(self) -> list[int]:
        return [a for a in self.share if self.got[a] < self.share[a]]

    def hear(self, actor: int, at: float) -> None:
        self.heard_at[actor] = max(self.heard_at[actor], at)
        self.last_heard[actor] = max(self.last_heard[actor], self.heard_at[actor])

    def delivered(self, actor: int, episodes: int, now: float) -> None:
        self.got[actor] += episodes
        self.last_heard[actor] = self.heard_at[actor] = now


def make_server(cfg: RunConfig, actor_critic):
    """The learner's gRPC server for this run: auth, TLS, run id and handshake identity, rollout
    contract, caps."""
    from pirl_core.runid import run_id
    from pirl_core.transport.auth import resolve_token, server_credentials
    from pirl_core.transport.contract import RolloutContract
    from pirl_core.transport.server import LearnerServer

    adapter = actor_critic.adapter
    chain_shape = (cfg.recipe.denoise_steps + 1, adapter.chunk_size, adapter.action_dim)
    contract = RolloutContract(cfg.actor.n_actors, chain_shape)
    server = LearnerServer(
        cfg.learner.host,
        cfg.learner.port,
        token=resolve_token(cfg.learner),
        credentials=server_credentials(cfg.learner),
        identity=identity.actor_identity(cfg),
        run_id=run_id(cfg),
        rollout_check=contract,
        max_payload_bytes=int(cfg.learner.max_payload_mb * 1e6),
    )
    contract.published = server.broadcast.latest_version
    return server


def build_trainer(cfg: RunConfig):
    """The run's actor-critic (the one every actor builds) and its trainer."""
    from pirl_core.recipe.actor_critic import actor_critic_for
    from pirl_core.recipe.trainer import trainer_for

    return trainer_for(cfg, actor_critic_for(cfg))


class Learner:
    def __init__(
        self,
        cfg: RunConfig,
        telemetry: Telemetry,
        progress: Progress,
        trainer,
        server,
        stop: StopRequest | None = None,
        dist: Distributed | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist
        self.stop = stop or StopRequest()
        self.telemetry = telemetry
        self.progress = progress
        self.trainer = trainer
        self.server = server
        self.last_checkpoint: Path | None = None
        # The restored step is on disk already, and step 0 is never saved: a checkpoint of the
        # untrained start would only make the output dir refuse a new run.
        self.saved_step = progress.step
        self.mid_update = False  # True while in-memory state is between two consistent steps
        self.duplicate_rounds = 0  # rounds received twice (a restarted actor) and dropped
        self._seen_rounds: set[tuple[int, int, int]] = set()  # (version, actor, round) still admissible
        self.best = None
        if cfg.eval.every > 0:  # checkpoints/best follows actor 0's periodic evaluations
            from pirl_core.eval.best import BestPointer

            self.best = BestPointer(cfg.output_dir)

    def publish(self) -> dict[str, float]:
        """Push the current parameters with the behaviour-policy settings the actors must sample
        with (``identity.PUSHED_FIELDS``): what the actors sample is what this learner scores."""
        tensors = parameters_to_tensors(self._full_trainer("publish").actor_critic)
        header = {
            "version": self.progress.version,
            "step": self.progress.step,
            "profile": self.cfg.profile,
            "behaviour": identity.behaviour(self.cfg),
        }
        return self.server.publish_parameters(self.progress.version, tensors, header)

    def gather(self) -> Gathered:
        """Block until every actor's share of this version is in; return it as :class:`Gathered`.

        Accepts a round once per (actor, version, round): a restarted actor re-collects its whole
        share of the current version and the rounds already received are dropped, so nothing is
        counted twice. Batches from older versions are dropped and counted unless
        ``learner.max_staleness`` admits them. An expected actor silent for
        ``learner.actor_timeout_s`` stops the run (:meth:`_actors_lost`). The batch is ordered by
        (version, actor, round), not by arrival, so the update does not depend on timing.
        """
        version = self.progress.version
        wait = ActorWait.start(self._shares(version), time.monotonic())
        accepted: dict[tuple[int, int, int], tuple[RoundHeader, RolloutBatch]] = {}
        while wait.episodes < wait.wanted:
            self.stop.check()
            item = self.server.get_rollout(timeout=1.0)
            now = time.monotonic()
            # checked on every pass, not only on empty polls: stale or duplicate rounds arriving
            # from one actor must not hide that another one went silent
            self._watch_actors(wait, version, now)
            if item is not None:
                self._admit(RoundHeader.from_wire(item[0]), item[1], wait, accepted, now)
        self._seen_rounds = {
            k for k in (*self._seen_rounds, *accepted) if version - k[0] <= self.cfg.learner.max_staleness
        }
        ordered = [accepted[k] for k in sorted(accepted)]
        return Gathered(
            concat([batch for _, batch in ordered]),
            [record for header, _ in ordered for record in header.stats],
        )

    def _shares(self, version: int) -> dict[int, int]:
        """Episodes each actor runs for ``version`` (its plan, as the actor derives it)."""
        return {a: len(episode_plan(self.cfg, a, version)) for a in range(self.cfg.actor.n_actors)}

    def _watch_actors(self, wait: ActorWait, version: int, now: float) -> None:
        """Stop the run on an expected actor silent for ``learner.actor_timeout_s``; post the
        waiting notice every ``WAITING_NOTICE_S``."""
        missing = wait.missing()
        for a in missing:  # a heartbeat (collecting, evaluating) counts as hearing from it
            wait.hear(a, self._contact(a))
        silent = [a for a in missing if now - wait.last_heard[a] > self.cfg.learner.actor_timeout_s]
        if silent:
            self._actors_lost(silent, version, now - min(wait.last_heard[a] for a in silent))
        if now >= wait.notice_at:
            self.telemetry.event(
                "waiting",
                self.progress.step,
                version=version,
                episodes=wait.episodes,
                wanted=wait.wanted,
                missing_actors=missing,
                connected_actors=self._connected_ids(),
                **self._waiting_status(missing, wait.heard_at, now, now - wait.started, version),
            )
            wait.notice_at = now + WAITING_NOTICE_S

    def _admit(
        self,
        header: RoundHeader,
        tensors: dict,
        wait: ActorWait,
        accepted: dict[tuple[int, int, int], tuple[RoundHeader, RolloutBatch]],
        now: float,
    ) -> None:
        """Add one received round to ``accepted``, or count it as stale or as a duplicate."""
        lag = self.progress.version - header.version
        # a round collected under another learner process (sent before a restart, delivered
        # after it) was sampled with that learner's parameters and settings: stale as well
        other_epoch = header.learner_epoch != self.server.epoch
        if lag < 0 or lag > self.cfg.learner.max_staleness or other_epoch:
            self.progress.dropped_stale += 1
            return
        actor = header.actor_id
        over_share = lag == 0 and wait.got[actor] + header.episodes > wait.share[actor]
        if header.key in accepted or header.key in self._seen_rounds or over_share:
            self.duplicate_rounds += 1  # a restarted actor re-sending a round we have
            return
        accepted[header.key] = (header, RolloutBatch.from_tensors(tensors))
        wait.episodes += header.episodes
        if lag == 0:
            wait.delivered(actor, header.episodes, now)

    def _contact(self, actor: int) -> float:
        """Monotonic time of the actor's last heartbeat (``-inf`` when it never sent one)."""
        contact = self.server.last_contact(actor)
        return float("-inf") if contact is None else contact

    def _waiting_status(
        self, missing: list[int], heard_at: dict[int, float], now: float, waited_s: float, version: int
    ) -> dict[str, object]:
        """The waiting notice's verdict per missing actor: busy (heard from within BUSY_WITHIN_S;
        with its episode counts when its heartbeat carried this version's progress) or silent.
        The console warns only about silent actors."""
        busy, silent, words = [], [], []
        for a in missing:
            ago = now - heard_at[a]
            if ago <= BUSY_WITHIN_S:
                busy.append(a)
                progress = self.server.actor_progress(a)
                if progress is not None and progress.version == version:
                    words.append(f"actor {a} busy: {progress.summary()}")
                else:
                    words.append(f"actor {a} busy (heard {ago:.0f} s ago)")
            else:
                silent.append(a)
                words.append(
                    f"actor {a} silent for {ago:.0f} s"
                    if math.isfinite(ago)
                    else f"actor {a} silent: nothing heard in {waited_s:.0f} s"
                )
        return {"busy_actors": busy, "silent_actors": silent, "status": "; ".join(words)}

    def _connected_ids(self) -> list[str]:
        return sorted({str(a["actor_id"]) for a in self.server.connected_actors()})

    def _actors_lost(self, silent: list[int], version: int, waited_s: float) -> None:
        """Stop cleanly: keep the last completed update on disk and name the silent actors."""
        connected = self._connected_ids()
        self.telemetry.event(
            "actor_lost",
            self.progress.step,
            actor_ids=silent,
            version=version,
            waited_s=round(waited_s, 1),
            connected_actors=connected,
        )
        if self.progress.step > 0:
            self.save()
            then = f"then the learner with --resume (update {self.progress.step} is saved)"
        else:
            then = "then restart the learner (no update was completed)"
        ids = ", ".join(map(str, silent))
        flags = " and ".join(f"--actor-id={a}" for a in silent)
        raise ActorLostError(
            f"actor {ids} sent nothing for policy version {version} in {waited_s:.1f}s "
            f"(learner.actor_timeout_s={self.cfg.learner.actor_timeout_s:g}; connected actors: "
            f"{', '.join(connected) or 'none'}); "
            f"restart it with `python -m pirl_core.actor ... {flags}`, {then}"
        )

    def save(self) -> None:
        if self.saved_step == self.progress.step:
            return
        counters = {**self.progress.counters(), **sinks.checkpoint_state(self.telemetry)}
        self.last_checkpoint = resume.save(self.cfg, self.progress.step, self._full_trainer("save"), counters)
        self.saved_step = self.progress.step
        self.telemetry.event("checkpoint", self.progress.step, path=str(self.last_checkpoint))

    def _full_trainer(self, command: str):
        """The trainer with full tensors: under FSDP every rank gathers them (``command`` tells the
        followers), otherwise this process's own."""
        if self.dist is None:
            return self.trainer
        with self.dist.peer_failures():
            return self.dist.full_trainer(self.trainer, command)

    def train(self, batch, on_policy: bool) -> dict[str, float]:
        """One update; under torchrun every rank runs it on this batch (pirl_core.distributed)."""
        step = self.progress.step
        if self.dist is None:
            return {**self.trainer.update(batch, update_index=step, on_policy=on_policy), "world_size": 1.0}
        with self.dist.peer_failures():
            self.dist.send("update", step=step, on_policy=on_policy)
            self.dist.broadcast(batch.to_tensors())
            metrics = self.trainer.update(batch, update_index=step, on_policy=on_policy)
        return {**metrics, "world_size": float(self.dist.world_size)}

    def run(self) -> None:
        cfg = self.cfg
        while self.progress.step < cfg.learner.updates:
            self.stop.check()
            push = self.publish()
            gathered = self.gather()
            batch = gathered.batch
            self.mid_update = True
            # Stale batches (max_staleness > 0) are off-policy by design: reported, not enforced.
            metrics = self.train(batch, on_policy=cfg.learner.max_staleness == 0)
            drift = getattr(self.trainer, "drift", None)
            if drift is not None and drift.created:  # the run's probe set, kept for a resume
                drift.save(cfg.output_dir)
            self.progress.step += 1
            self.progress.version += 1
            self.progress.samples += len(batch)
            self.progress.episodes += gathered.episodes
            if self.progress.step % cfg.telemetry.log_every == 0 or self.progress.step == cfg.learner.updates:
                # one dict: the trainer's metrics also carry "samples" (this batch) and
                # "return_mean"; the run counters and episode stats below take precedence
                fields = {**metrics, **gathered.episode_stats()}
                fields.update(
                    update=self.progress.step,
                    updates_total=cfg.learner.updates,
                    version=self.progress.version,
                    samples=self.progress.samples,
                    episodes=self.progress.episodes,
                    dropped_stale=self.progress.dropped_stale,
                    rejected_payloads=self.server.rejected_payloads,
                    duplicate_rounds=self.duplicate_rounds,
                    push_mb=push.get("push_mb", 0.0),
                    push_s=push.get("push_s", 0.0),
                )
                self.telemetry.metrics(self.progress.step, headline=LEARNER_HEADLINE, **fields)
            if self.progress.step % cfg.checkpoint.every == 0 or self.progress.step == cfg.learner.updates:
                self.save()
            self.mid_update = False
            self.track_best()

    def track_best(self) -> None:
        switched = self.best.poll() if self.best is not None else None
        if switched is not None:
            step, score, path = switched
            self.telemetry.event(
                "best", self.progress.step, eval_step=step, success_rate=score, path=str(path)
            )


def _run_or_lost_rank(learner: Learner, dist: Distributed | None) -> None:
    """torchrun answers a dead rank by SIGTERM to the others: on rank 0 that is not the user's
    stop but :class:`RankFailedError` naming the rank. Between updates rank 0 holds the full,
    consistent state under DDP, so it still saves it first; under FSDP the lost rank held a shard of
    it, so the last checkpoint is what survives."""
    try:
        learner.run()
    except KeyboardInterrupt as exc:
        lost = dist.lost_peers() if dist is not None else []
        if not lost:
            raise
        if not learner.mid_update and not dist.sharded:
            learner.save()
        raise dist.rank_failed(lost, "while rank 0 waited for rollouts") from exc


def main(argv: list[str] | None = None) -> int:
    args = parse_args("python -m pirl_core.learner", argv)
    cfg = args.config
    stop = StopRequest()
    stop.install()  # from here on SIGINT/SIGTERM only set a flag, read at safe points
    dist = Distributed.from_env(cfg.learner.strategy, cfg.policy.device, cfg.learner.collective_timeout_s)
    try:
        if dist is not None and not dist.is_main:
            # Followers ignore signals' flags: rank 0 stops at a safe point and tells them.
            limit_threads()
            seed_everything(cfg.seed)
            return follow(cfg, dist, build_trainer)
        with OutputDirLock(cfg.output_dir):  # exit 2 while another learner holds it
            return _train(cfg, args.resume, args.resume_from, stop, dist)
    finally:
        if dist is not None:
            if dist.is_main:
                dist.stop_followers()  # they exit 0; rank 0 carries the run's exit code
            dist.close()
        stop.uninstall()


def _train(
    cfg: RunConfig, resume_flag: bool, resume_from: str | None, stop: StopRequest, dist: Distributed | None
) -> int:
    plan = resume.prepare_run(cfg, resume_flag, resume_from)  # exits 2/3/4 before any write
    limit_threads()
    seed_everything(cfg.seed)
    trainer = build_trainer(cfg)
    progress = Progress()
    if plan is not None:
        if trainer.drift is not None:  # before restore: the built model is still the run's start
            trainer.drift.resume(cfg.output_dir, plan.path, trainer.actor_critic)
        restored = resume.restore(plan, trainer)
        progress = Progress(
            step=restored.step,
            version=restored.version,
            samples=int(restored.counters.get("samples", 0)),
            episodes=int(restored.counters.get("episodes", 0)),
            dropped_stale=int(restored.counters.get("dropped_stale", 0)),
        )
    if dist is not None:
        dist.send("start")
        with dist.peer_failures():
            dist.sync_trainer_state(trainer)  # followers start from rank 0's (restored) state
        trainer = dist.wrap(trainer)  # the same model and state, updated through DDP/FSDP

    started = time.monotonic()
    server = make_server(cfg, trainer.actor_critic)
    server.start()
    telemetry = sinks.open_telemetry(
        cfg,
        "learner",
        wandb_run_id=sinks.resumed_wandb_run_id(cfg, plan and plan.path, restored.counters if plan else None),
    )
    telemetry.event(
        "run", progress.step, echo=False, **run_record(cfg, resumed_from=str(plan.path) if plan else None)
    )
    learner = Learner(cfg, telemetry, progress, trainer, server, stop, dist)
    if plan is not None:
        telemetry.event("resumed", progress.step, checkpoint=str(plan.path), version=progress.version)
    telemetry.event(
        "ready",
        progress.step,
        host=cfg.learner.host,
        port=server.port,
        version=progress.version,
        world_size=dist.world_size if dist else 1,
        run=server.handshake.run_id,
    )

    def fail(err: PirlError) -> None:
        # Recorded for the console (kind "error"); run_main prints the line and exits with its code.
        # finish("failed") lets actors exit at once (non-zero) instead of waiting out their connect
        # timeout. Nothing of the failed update is saved (mid_update); say which checkpoint is good.
        if isinstance(err, (DivergedError, RatioCheckError, RankFailedError)):
            last = layout.last_pointer(cfg.output_dir)
            err.detail = f"last good checkpoint (unchanged): {last or 'none yet'}"
        telemetry.error(err.message, progress.step, exit_code=int(err.exit_code))
        if not isinstance(err, RankFailedError):  # a lost rank: actors wait and reconnect on resume
            server.finish("failed", timeout=2.0, step=progress.step)
        server.stop(grace=1.0)
        telemetry.close()

    try:
        try:
            _run_or_lost_rank(learner, dist)
        except OSError as exc:  # a write outside the checkpoint writer (checkpoints/best, ...)
            fault = from_os_error(exc)
            if fault is None:
                raise
            raise fault from exc
    except KeyboardInterrupt as exc:
        # A clean stop (SIGINT/SIGTERM at a safe point) keeps the work done so far: checkpoint
        # (atomically), then 130/143. A hard one (second signal) inside an update saves nothing:
        # that state is half-applied. Actors learn why from finish(reason) and exit non-zero.
        reason = getattr(exc, "reason", "interrupted")
        if not learner.mid_update:
            try:
                learner.save()
            except PirlError as err:  # e.g. the disk is full: that, not the stop, is the outcome
                fail(err)
                raise err from None
        server.finish(reason, step=progress.step)
        server.stop(grace=1.0)
        telemetry.event(reason, progress.step, checkpoint=str(learner.last_checkpoint))
        telemetry.close()
        raise
    except PirlError as err:
        fail(err)
        raise
    server.finish("done", step=progress.step)
    server.stop(grace=2.0)
    wall = time.monotonic() - started
    telemetry.event(
        "done",
        progress.step,
        echo=False,
        updates=progress.step,
        samples=progress.samples,
        wall_s=round(wall, 1),
    )
    telemetry.say(
        f"[learner] done updates={progress.step} samples={progress.samples} wall_s={wall:.1f} "
        f"checkpoint={learner.last_checkpoint or layout.last_pointer(cfg.output_dir)}"
    )
    telemetry.close()
    return ExitCode.OK


if __name__ == "__main__":
    run_main(main)
