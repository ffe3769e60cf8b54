"""Process-wide randomness and CPU threads: what every pirl process sets up before it builds.

Rollout randomness is never drawn from the global RNG: it is *derived* from (seed, actor id,
policy version, round) with :func:`derived_seed`, so a resumed run reproduces exactly the rollouts
the uninterrupted run would have collected. The global seed only makes module construction and
anything else left to the global RNG repeatable.
"""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def limit_threads() -> None:
    """One torch thread per process unless the user says otherwise: learner and actor share
    the machine, and oversubscribed BLAS threads make both slower."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // 2)))


def derived_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (sha256 of their ``/``-joined text)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
