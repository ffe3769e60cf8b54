"""The soak's third process (tests/test_soak.py): connects to a running learner and disconnects,
again and again, until it is killed. Each round is one of:

* an actor of *another run* (same profile, another output dir): refused at its first call;
* an observer of this run: follows the parameter stream for a moment, sends nothing, leaves;
* a raw TCP connection that writes garbage and closes.

Usage: ``python tests/soak_prober.py PORT OWN_OUTPUT_DIR OTHER_OUTPUT_DIR PERIOD_S``. Prints one
line per round (``probe <n> <kind> <outcome>``).
"""

from __future__ import annotations

import itertools
import socket
import sys
import time

from pirl_core.checkpoints.identity import actor_identity
from pirl_core.config import load_config
from pirl_core.errors import TransportError
from pirl_core.runid import run_id
from pirl_core.transport.client import ActorClient

SMALL = {
    "env.n_envs": 2,
    "env.episode_length": 6,
    "learner.episodes_per_update": 2,
    "recipe.update_epochs": 1,
    "recipe.minibatches": 1,
    "policy.hidden_dim": 16,
    "actor.n_actors": 2,
}


def client(port: int, output_dir: str, actor_id: str) -> ActorClient:
    cfg = load_config("toy", {**SMALL, "output_dir": output_dir, "learner.port": port})
    return ActorClient(
        "127.0.0.1", port, actor_id, connect_timeout_s=5.0, identity=actor_identity(cfg), run_id=run_id(cfg)
    )


def probe(kind: str, port: int, own: str, other: str) -> str:
    if kind == "garbage":
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 4)
        return "closed"
    c = client(port, other if kind == "stranger" else own, "observer")
    try:
        c.wait_for_learner()
        header, _ = c.receive_parameters(min_version=0, timeout=3.0)
        return f"version {header.get('version')}"
    except TransportError as exc:
        return "refused" if "refused this actor" in exc.message else f"error {exc.message[:80]}"
    finally:
        c.close()


def main() -> None:
    port, own, other, period = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    for n, kind in zip(itertools.count(), itertools.cycle(["stranger", "observer", "garbage"]), strict=False):
        try:
            outcome = probe(kind, port, own, other)
        except OSError as exc:
            outcome = f"os error {exc}"
        print(f"probe {n} {kind} {outcome}", flush=True)
        time.sleep(period)


if __name__ == "__main__":
    main()
