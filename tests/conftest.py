"""Shared pytest fixtures, and the test process's own entrypoint setup.

Where test helpers live: fixtures every test may ask for by name are here; plain helper functions
and constants that tests import sit in helper modules beside the tests, one per area:
``e2e_helpers`` (running the real entry points as subprocesses, toy run flags), ``checkpoint_helpers``
(real toy trainers and checkpoint trees), ``console_helpers`` (the console with stand-in children
from ``tools/screenshots/fake_child.py``), ``batches`` (synthetic rollout batches),
``transport_run``, ``recipe_checks``, ``libero_synthetic``, ``demo_datasets``, ``soak_prober``
and ``disk_full_scenario`` (a script run inside ``unshare``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pirl_core.process_env import configure_process

# pytest is this process's entrypoint: decide MUJOCO_GL before any test module imports mujoco,
# exactly as pirl's own entrypoints do (library modules never set it).
configure_process()


@pytest.fixture
def made() -> Iterator[list]:
    """Learner servers and actor clients a test started; each is stopped (servers, no grace) or
    closed (clients) when the test ends, whatever its outcome."""
    from pirl_core.transport.client import ActorClient

    things: list = []
    yield things
    for thing in things:
        thing.close() if isinstance(thing, ActorClient) else thing.stop(grace=0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the test (numbers reproducible, no oversubscription of
    the two CI cores); the previous count is restored after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
