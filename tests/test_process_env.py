"""The process-wide facts with one home: ``MUJOCO_GL`` decided by entrypoints only
(``pirl_core/process_env.py``) and the source tree and its git provenance (``pirl_core/source.py``)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from pirl_core.process_env import MUJOCO_GL_DEFAULT, configure_process
from pirl_core.source import ASSETS_DIR, PACKAGE_DIR, PROFILES_DIR, REPO_ROOT, GitState, git_state

SCANNED = ("pirl_core", "pirl_console", "tools", "benchmarks")


def _python(code: str, env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _without_mujoco_gl() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}


def test_entrypoints_default_mujoco_gl_to_egl_before_mujoco_is_imported() -> None:
    """What ``pirl_core.envs.libero`` used to do at its import, now done by the entrypoint wrapper
    every ``python -m pirl_core.X`` runs (``run_main``): egl when unset, before mujoco loads."""
    code = (
        "import os, sys\n"
        "from pirl_core.cli import run_main\n"
        "import pirl_core.envs.libero\n"
        "run_main(lambda: print(os.environ.get('MUJOCO_GL'), 'mujoco' in sys.modules) or 0)\n"
    )
    env = _without_mujoco_gl()
    assert _python(code, env) == ["egl", "False"]
    env["MUJOCO_GL"] = "osmesa"  # an explicit choice is respected
    assert _python(code, env)[0] == "osmesa"


def test_a_library_import_leaves_mujoco_gl_alone() -> None:
    code = "import os\nimport pirl_core.envs.libero, pirl_core.eval.evaluate\nprint(os.environ.get('MUJOCO_GL'))\n"
    assert _python(code, _without_mujoco_gl()) == ["None"]


def test_configure_process_sets_only_what_is_unset() -> None:
    env: dict[str, str] = {}
    assert configure_process(env) == MUJOCO_GL_DEFAULT == env["MUJOCO_GL"] == "egl"
    chosen = {"MUJOCO_GL": "glfw"}
    assert configure_process(chosen) == "glfw" and chosen == {"MUJOCO_GL": "glfw"}


def _mujoco_gl_writers(path: Path) -> list[int]:
    """Lines where code names MUJOCO_GL as a string (docstrings and comments do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value == "MUJOCO_GL" and id(node) not in docstrings
    ]


def test_only_process_env_names_mujoco_gl() -> None:
    found = {
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for root in SCANNED
        for path in sorted((REPO_ROOT / root).rglob("*.py"))
        for line in _mujoco_gl_writers(path)
    }
    assert {where.split(":")[0] for where in found} == {"pirl_core/process_env.py"}, sorted(found)


def test_every_entrypoint_decides_mujoco_gl() -> None:
    """Each ``__main__`` module and each module runnable as a script in the packages and tools
    calls ``configure_process`` itself or runs through ``run_main`` (which does, see the first
    test); so do the benchmarks that render LIBERO (the others never import mujoco)."""
    paths = [
        p for root in ("pirl_core", "pirl_console", "tools") for p in sorted((REPO_ROOT / root).rglob("*.py"))
    ]
    paths += [REPO_ROOT / "benchmarks" / name for name in ("actor_throughput.py", "libero_lift.py")]
    missing = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        runnable = path.name == "__main__.py" or re.search(r"^if __name__ == .__main__.:", text, re.M)
        if runnable and "configure_process()" not in text and "run_main(" not in text:
            missing.append(str(path.relative_to(REPO_ROOT)))
    assert not missing, f"entrypoints that never decide MUJOCO_GL: {missing}"


def test_source_tree_paths_have_one_home() -> None:
    from pirl_core import config, telemetry
    from pirl_core.policies.xvla import tokenizer

    assert PACKAGE_DIR == REPO_ROOT / "pirl_core" and (PACKAGE_DIR / "source.py").is_file()
    assert (REPO_ROOT / "pirl_console").is_dir() and (PROFILES_DIR / "smoke.toml").is_file()
    assert config.PROFILES_DIR is PROFILES_DIR and tokenizer.ASSETS_DIR is ASSETS_DIR
    assert tokenizer.TOKENIZER_DIR.is_dir() and telemetry.git_state is git_state


def test_git_provenance_one_helper_two_forms(tmp_path: Path, monkeypatch) -> None:
    from pirl_core import telemetry
    from pirl_core.sinks import wandb

    assert git_state(tmp_path) is None  # not a checkout: best effort, no error
    state = git_state()
    if state is not None:  # a git checkout (CI clones one)
        assert re.fullmatch(r"[0-9a-f]{40}", state.commit)
        assert telemetry.git_commit() == state.label()
    monkeypatch.setattr(telemetry, "git_state", lambda: GitState("a" * 40, True))
    monkeypatch.setattr(wandb, "git_state", lambda: GitState("a" * 40, True))
    assert telemetry.git_commit() == "a" * 40 + "+dirty"
    assert wandb.git_provenance() == {"commit": "a" * 40, "dirty": True}
    monkeypatch.setattr(telemetry, "git_state", lambda: None)
    monkeypatch.setattr(wandb, "git_state", lambda: None)
    assert telemetry.git_commit() is None
    assert wandb.git_provenance() == {"commit": "unknown", "dirty": None}
