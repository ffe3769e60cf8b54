"""Every config field is declared once (config.setting): default, doc, resume class. The resume
validator's tables, the actor handshake, the parameter push, ``--help`` and the console's form all
read that one declaration."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from pirl_core import config
from pirl_core.checkpoints import identity
from pirl_core.cli import build_parser
from pirl_core.config import FATAL, PUSHED, RESUME_CLASSES, RunConfig, field_specs
from pirl_core.quoting import value_text

ROOT = Path(__file__).resolve().parents[1]


def _leaf_fields(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    out: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out.update(_leaf_fields(type(default), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = f
    return out


def test_every_field_has_a_doc_and_a_resume_class() -> None:
    fields = _leaf_fields(RunConfig)
    assert set(fields) == set(identity.config_fields()) == {s.name for s in field_specs()}
    for name, f in fields.items():
        doc = f.metadata.get(config.DOC, "")
        assert doc.strip() and "\n" not in doc, (
            f"{name}: declare it with config.setting(default, doc, resume)"
        )
        assert f.metadata.get(config.RESUME) in RESUME_CLASSES, f"{name}: resume class missing"


def test_the_validator_tables_are_the_declarations() -> None:
    specs = field_specs()
    assert {
        s.name: identity.FATAL if s.resume == FATAL else identity.CHANGED for s in specs
    } == identity.FIELD_CLASSES
    assert set(identity.PUSHED_FIELDS) == {s.name for s in specs if s.resume == PUSHED}
    assert identity.FATAL_ONLY_IF == {"env.camera_size": ("env.type", "libero")}
    # what the validator does with them: a change of each field, one at a time, on a LIBERO config
    cfg = RunConfig()
    saved = cfg.to_dict()
    for spec in specs:
        section, _, key = spec.name.rpartition(".")
        current = cfg.to_dict()
        (current[section] if section else current)[key] = "changed"
        (row,) = identity.compare_configs(saved, current)
        assert row.severity == (identity.FATAL if spec.resume == FATAL else identity.CHANGED), spec.name
    assert set(identity.actor_identity(cfg)) == {s.name for s in specs if s.resume == FATAL}
    assert set(identity.behaviour(cfg)) == {s.name for s in specs if s.resume == PUSHED}


def test_help_lists_every_field_with_its_doc_and_default() -> None:
    text = build_parser("python -m pirl_core.actor").format_help()
    for spec in field_specs():
        assert f"--{spec.name}=" in text and spec.doc in text, spec.name
        assert (
            f"(default {value_text(spec.default)}; {spec.rule + '; ' if spec.rule else ''}resume: " in text
        ), spec.name
    proc = subprocess.run(
        [sys.executable, "-m", "pirl_core.launch", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--recipe.clip=float  (default 0.2; in (0, 1); resume: tunable)" in proc.stdout
    assert (
        "--env.camera_size=int  (default 64; >= 16; resume: fatal while env.type=libero, else tunable)"
        in proc.stdout
    )
    assert "--learner.strategy=ddp|fsdp" in proc.stdout and "PPO ratio clip" in proc.stdout
