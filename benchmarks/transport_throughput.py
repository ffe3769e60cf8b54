"""Parameter-push throughput of pirl's transport vs raw safetensors, for 50 MB and 400 MB payloads.

What is timed (same process, same run, so the ratio is meaningful on a busy machine):

* **baseline**: ``safetensors.torch.save`` + ``safetensors.torch.load`` of the same tensors in
  memory: the serialisation floor any safetensors-based transport pays.
* **push**: the learner (this process) calls ``LearnerServer.publish_parameters``; a real actor
  process (``ActorClient``, spawned by this script) receives, reassembles, checks and decodes the
  payload, then acknowledges with a tiny rollout payload. Timed from the publish call to the
  ack's arrival: encode + chunked gRPC stream over 127.0.0.1 + decode + a tiny ack.

MB/s = payload MB / seconds; ratio = push MB/s / baseline MB/s (1.0 would mean the network part
is free). Usage::

    OMP_NUM_THREADS=1 python benchmarks/transport_throughput.py [--sizes 50 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.transport.server import LearnerServer  # noqa: E402

ACTOR_CODE = """
import sys, time
from pirl_core.transport.client import ActorClient
client = ActorClient("127.0.0.1", int(sys.argv[1]), "bench", connect_timeout_s=60)
client.wait_for_learner()
version = 1
while True:
    header, tensors = client.receive_parameters(min_version=version, timeout=600)
    if header.get("done"):
        break
    n = sum(t.numel() for t in tensors.values())
    client.send_rollout({}, {"ack_version": header["version"], "numel": n})
    version = header["version"] + 1
client.close()
"""


def make_tensors(mb: int) -> dict[str, torch.Tensor]:
    """A state-dict-like mix: a few large matrices and many small vectors, float32."""
    total = mb * 1_000_000 // 4
    small = {f"layer{i}.bias": torch.randn(1024) for i in range(64)}
    big_numel = (total - 64 * 1024) // 8
    big = {f"layer{i}.weight": torch.randn(big_numel) for i in range(8)}
    return {**big, **small}


def baseline(tensors: dict[str, torch.Tensor]) -> tuple[float, int]:
    t0 = time.perf_counter()
    blob = st_save(tensors)
    st_load(blob)
    return time.perf_counter() - t0, len(blob)


def wait_ack(server: LearnerServer, version: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = server.get_rollout(timeout=0.01)
        if item is not None and item[0].get("ack_version") == version:
            return
    raise TimeoutError(f"actor did not acknowledge version {version} within {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 400], help="payload sizes in MB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    server = LearnerServer("127.0.0.1", 0).start()
    actor = subprocess.Popen(
        [sys.executable, "-c", ACTOR_CODE, str(server.port)], cwd=Path(__file__).parents[1]
    )
    try:
        if not server.wait_for_actors(1, timeout=120):
            raise SystemExit("actor process did not connect")
        version = 0
        print(
            f"{'MB':>6} {'baseline MB/s':>14} {'push MB/s':>10} {'ratio':>6} {'push s':>7}  (median of {args.repeats})"
        )
        for mb in args.sizes:
            tensors = make_tensors(mb)
            base, push = [], []
            for _ in range(args.repeats):
                base_s, nbytes = baseline(tensors)
                base.append(nbytes / 1e6 / base_s)
                version += 1
                t0 = time.perf_counter()
                server.publish_parameters(version, tensors, {"bench": True}, wait_s=0)
                wait_ack(server, version, timeout=600)
                push_s = time.perf_counter() - t0
                push.append(nbytes / 1e6 / push_s)
            b, p = statistics.median(base), statistics.median(push)
            print(f"{mb:>6} {b:>14.0f} {p:>10.0f} {p / b:>6.2f} {nbytes / 1e6 / p:>7.2f}")
            del tensors
        server.finish("benchmark done", timeout=10)
    finally:
        actor.wait(timeout=30)
        server.stop()


if __name__ == "__main__":
    main()
