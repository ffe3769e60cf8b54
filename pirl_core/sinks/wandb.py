"""Weights & Biases: one run per training run, owned by the learner (LeRobot's convention).

Why the learner owns it: LeRobot's asynchronous RL (``lerobot/rl``) logs everything through the
learner's ``WandBLogger`` with one custom step key per stream, because W&B's own step must only
grow. pirl does the same: the learner's records arrive through the telemetry sink hook, the
actors' records are read from their JSONL files (:mod:`pirl_core.sinks.follow`), and each prefix
(``learner``, ``actor-0``, ``eval``) is plotted against its own ``<prefix>/step``.

Conventions taken from LeRobot's ``WandBLogger``: ``dir=<output_dir>`` (files under
``<output_dir>/wandb``), tags ``policy:<type>``, ``seed:<n>``, ``env:<type>``, job type
``train_eval``, the resolved run config as the W&B config. pirl adds the profile's TOML text and
the git commit. The run id is kept in each checkpoint's training state and a resume continues that
run (``resume="allow"``). ``offline`` needs no network (``wandb sync <output_dir>/wandb/offline-run-*``
uploads later); ``online`` never prompts for a login: without credentials it fails at once, which
the telemetry reports once while training goes on.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pirl_core.config import RunConfig, resolve_profile_path
from pirl_core.redact import redact_argv
from pirl_core.sinks.follow import JsonlFollower
from pirl_core.sinks.scalars import prefix_of, scalars
from pirl_core.source import git_state
from pirl_core.telemetry import TELEMETRY_DIR

WANDB_DIR = "wandb"


def default_run_name(cfg: RunConfig) -> str:
    return cfg.telemetry.wandb_run_name or f"{cfg.env.type}_{cfg.policy.type}_{Path(cfg.output_dir).name}"


def run_tags(cfg: RunConfig) -> list[str]:
    """LeRobot's ``cfg_to_group`` tags, then pirl's recipe, then the user's."""
    tags = [
        f"policy:{cfg.policy.type}",
        f"seed:{cfg.seed}",
        f"env:{cfg.env.type}",
        f"suite:{cfg.env.suite}",
        f"method:{cfg.recipe.method}",
        f"algorithm:{cfg.recipe.algorithm}",
        *cfg.telemetry.wandb_tags,
    ]
    return [t[:64] for t in dict.fromkeys(tags)]


def git_provenance() -> dict[str, Any]:
    """The commit this code runs from (and whether the tree has uncommitted changes)."""
    state = git_state()
    return {"commit": "unknown", "dirty": None} if state is None else asdict(state)


def run_config(cfg: RunConfig) -> dict[str, Any]:
    """What W&B shows as the run's config: the resolved RunConfig (secrets redacted), the profile
    text, the commit."""
    from pirl_core.redact import mask, redact_config, secret_values

    data = redact_config(cfg)
    try:
        profile_toml = resolve_profile_path(cfg.profile).read_text(encoding="utf-8")
    except Exception:  # noqa: BLE001 - a profile given as a since-deleted path: config still goes up
        profile_toml = ""
    profile_toml = mask(profile_toml, secret_values(cfg))  # a profile may hold an inline token
    data["pirl"] = {
        "git": git_provenance(),
        "profile_toml": profile_toml,
        "output_dir": str(Path(cfg.output_dir)),
    }
    return data


def _require_credentials(wandb: Any) -> None:
    """Online mode must never stop for an interactive login (no stdin in CI or the console)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return
    from wandb.sdk.lib import wbauth

    if wbauth.read_netrc_auth(host=wbauth.HostUrl(wandb.Settings().base_url)) is None:
        raise RuntimeError(
            "telemetry.wandb='online' but no W&B credentials (run `wandb login` or set WANDB_API_KEY; "
            "or use --telemetry.wandb=offline and `wandb sync` later)"
        )


class WandbSink:
    name = "wandb"

    def __init__(self, cfg: RunConfig, source: str = "learner", run_id: str | None = None) -> None:
        import wandb

        mode = cfg.telemetry.wandb
        if mode == "online":
            _require_credentials(wandb)
        output_dir = Path(cfg.output_dir).resolve()
        (output_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)
        # W&B records this process's command line as run metadata: the arguments were parsed
        # already, so an inline token is redacted in sys.argv itself (pirl_core/redact.py).
        sys.argv[1:] = redact_argv(sys.argv[1:])
        self.run = wandb.init(
            id=run_id or wandb.util.generate_id(),
            # Offline runs keep the id (``wandb sync`` uploads into it); W&B ignores resume there.
            resume="allow" if mode == "online" else None,
            project=cfg.telemetry.wandb_project,
            entity=cfg.telemetry.wandb_entity or None,
            name=default_run_name(cfg),
            tags=run_tags(cfg),
            dir=str(output_dir),
            config=run_config(cfg),
            job_type="train_eval",
            save_code=False,
            mode=mode,
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", login_timeout=5, init_timeout=60),
        )
        self.run_id: str = self.run.id
        self.resumed = run_id is not None  # offline: `wandb sync --append` adds this segment
        self._prefixes: set[str] = set()
        self._follower = JsonlFollower(output_dir / TELEMETRY_DIR, exclude=source)

    def describe(self) -> dict[str, Any]:
        if self.run.settings.mode == "offline":
            run_dir = Path(self.run.dir).parent
            return {
                "mode": "offline",
                "run_id": self.run_id,
                "dir": str(run_dir),
                "upload": f"wandb sync{' --append' if self.resumed else ''} {run_dir}",
            }
        return {"mode": str(self.run.settings.mode), "run_id": self.run_id, "url": self.run.get_url() or ""}

    def _define(self, prefix: str) -> None:
        if prefix not in self._prefixes:
            self._prefixes.add(prefix)
            self.run.define_metric(f"{prefix}/step", hidden=True)
            self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")

    def _log(self, record: dict[str, Any]) -> None:
        if record.get("kind") == "error":
            self.run.summary[f"{record.get('source')}/error"] = str(record.get("message", ""))
            return
        if record.get("event") in ("checkpoint", "done"):
            extra = {k: v for k, v in record.items() if k not in ("ts", "source", "kind", "event")}
            self.run.summary[f"{record.get('source')}/{record['event']}"] = extra
        values = scalars(record)
        if not values:
            return
        prefix = prefix_of(record)
        self._define(prefix)
        self.run.log({**values, f"{prefix}/step": int(record.get("step", 0))})

    def write(self, record: dict[str, Any]) -> None:
        for other in self._follower.poll():  # actors' records that arrived since the last one
            self._log(other)
        self._log(record)

    def close(self) -> None:
        try:
            for other in self._follower.poll():
                self._log(other)
        finally:
            self.run.finish()
