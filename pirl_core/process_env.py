"""Process-wide environment decided once per process, by its entrypoint.

Why here and not in the modules that need it: ``MUJOCO_GL`` is read by MuJoCo once, when it is
first imported, and anything (LeRobot's LIBERO wrapper, robosuite, a test) may import it. A library
module that sets it at its own import time only works when it happens to be imported first, and
seven modules each setting it left nobody owning the decision. So every entrypoint (each
``__main__``, :func:`pirl_core.cli.run_main`, the console, the launcher, the benchmarks, the tests'
``conftest.py``) calls :func:`configure_process` first thing, and library modules never touch the
variable. Children inherit the decision through ``os.environ`` and, being entrypoints themselves,
confirm it.

Layer 1 (no pirl imports): anything may use it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

MUJOCO_GL_DEFAULT = "egl"
"""Mesa's software EGL renders on CPU-only machines and on GPUs alike, without a display."""


def configure_process(environ: MutableMapping[str, str] | None = None) -> str:
    """Decide the rendering backend for this process and its children: the user's ``MUJOCO_GL``
    when set (an explicit choice is respected), else :data:`MUJOCO_GL_DEFAULT`. Returns the
    backend. Call it before anything imports ``mujoco``."""
    env = os.environ if environ is None else environ
    return env.setdefault("MUJOCO_GL", MUJOCO_GL_DEFAULT)
