"""Logging backends fed from the telemetry records: W&B and TensorBoard (docs/design.md, telemetry).

:func:`open_telemetry` is what the learner and the actors call instead of building a
:class:`~pirl_core.telemetry.Telemetry` themselves: it attaches the backends the config turns on.
A backend that cannot start (not installed, no credentials, disk full) is reported once and the
process trains on with the JSONL alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from pirl_core.config import RunConfig
from pirl_core.telemetry import Sink, Telemetry

# Key of the W&B run id in a checkpoint's training state (training_step.json "counters").
WANDB_RUN_ID_KEY = "wandb_run_id"


def _backends(cfg: RunConfig, source: str, wandb_run_id: str | None) -> list[tuple[str, Callable[[], Sink]]]:
    backends: list[tuple[str, Callable[[], Sink]]] = []
    if cfg.telemetry.tensorboard:

        def tensorboard() -> Sink:
            from pirl_core.sinks.tensorboard import TensorBoardSink

            return TensorBoardSink(cfg.output_dir, source)

        backends.append(("tensorboard", tensorboard))
    if cfg.telemetry.wandb != "off" and source == "learner":

        def wandb() -> Sink:
            from pirl_core.sinks.wandb import WandbSink

            return WandbSink(cfg, source, run_id=wandb_run_id)

        backends.append(("wandb", wandb))
    return backends


def open_telemetry(
    cfg: RunConfig, source: str, *, wandb_run_id: str | None = None, stdout: TextIO | None = None
) -> Telemetry:
    from pirl_core.redact import secret_values

    telemetry = Telemetry(cfg.output_dir, source, stdout=stdout, secrets=tuple(secret_values(cfg)))
    for name, build in _backends(cfg, source, wandb_run_id):
        try:
            sink = build()
        except Exception as exc:  # noqa: BLE001 - a logging backend never stops training
            telemetry.sink_failed(name, exc)
            continue
        telemetry.add_sink(sink)
        telemetry.event("logging_backend", backend=name, **sink.describe())  # where to look
    return telemetry


def checkpoint_state(telemetry: Telemetry) -> dict[str, Any]:
    """What a checkpoint keeps so a resume continues the same W&B run."""
    for sink in telemetry.sinks:
        run_id = getattr(sink, "run_id", None)
        if isinstance(run_id, str) and run_id:
            return {WANDB_RUN_ID_KEY: run_id}
    return {}


def resumed_wandb_run_id(
    cfg: RunConfig, checkpoint: Path | None, counters: Mapping[str, Any] | None
) -> str | None:
    """The W&B run to continue: the checkpoint's, unless this is a fork into another output dir."""
    if checkpoint is None or not counters:
        return None
    from pirl_core.checkpoints import layout

    if layout.checkpoint_output_dir(Path(checkpoint).resolve()) != Path(cfg.output_dir).resolve():
        return None  # --resume-from into a new output dir: a new run, not the parent's
    run_id = counters.get(WANDB_RUN_ID_KEY)
    return run_id if isinstance(run_id, str) and run_id else None
