"""Env workers (pirl_core/envs/workers.py) and their shared memory (pirl_core/envs/shm.py):
the same batch whatever the worker count, a dead worker named in the error, and no /dev/shm
segment left behind on normal exit, Ctrl-C or worker death. Toy-env tests are fast; the LIBERO
ones (simulators in spawned processes, seconds each) are ``slow``."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
import pytest
import torch

from pirl_core.config import EnvConfig, RecipeConfig, load_config
from pirl_core.envs.shm import FieldSpec, SharedArrays, segment_names
from pirl_core.envs.workers import (
    EnvWorkerError,
    WorkerVectorEnv,
    make_local_env,
    resolve_workers,
    split_slots,
)
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.policies.mlp import MLPFlowAdapter
from pirl_core.recipe.actor_critic import build_actor_critic
from pirl_core.rollout import collect_rollouts

REPO = Path(__file__).resolve().parents[1]
TOY = EnvConfig(type="toy", suite="point_reach", task_ids=[0, 1, 2], n_envs=5, episode_length=12)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): count it as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------ fast: layout and config


def test_shared_arrays_round_trip_and_reject_a_wrong_layout() -> None:
    fields = [FieldSpec(("pixels", "image"), (2, 2, 3), "uint8"), FieldSpec(("state",), (4,), "float32")]
    owner = SharedArrays.create(fields, n_envs=3)
    try:
        assert owner.name in segment_names(os.getpid())
        other = SharedArrays.attach(owner.name, fields, n_envs=3)
        other.write(slice(1, 3), {("state",): np.ones((2, 4), np.float32)})
        got = owner.read([("state",)])[("state",)]
        np.testing.assert_array_equal(got, [[0] * 4, [1] * 4, [1] * 4])
        got[:] = 7  # a copy: the segment is not changed by the reader
        assert owner.arrays[("state",)].max() == 1
        with pytest.raises(ValueError, match=r"state: got float64\[2, 4\].*expects float32\[2, 4\]"):
            other.write(slice(1, 3), {("state",): np.ones((2, 4))})
        other.close()
    finally:
        owner.unlink()
    assert owner.name not in segment_names(os.getpid())


def test_workers_default_to_the_usable_cores_capped_by_n_envs() -> None:
    cores = len(os.sched_getaffinity(0))
    libero = EnvConfig(type="libero", n_envs=64)
    assert resolve_workers(libero) == min(cores, 64)
    assert resolve_workers(dataclasses.replace(libero, n_envs=1)) == 1
    if cores > 1:  # n_envs = cores + 1 needs shares of 2: the fewest workers with shares of 2
        assert resolve_workers(dataclasses.replace(libero, n_envs=cores + 1)) == -(-(cores + 1) // 2)
    assert resolve_workers(dataclasses.replace(libero, workers=3, n_envs=2)) == 2
    assert resolve_workers(dataclasses.replace(TOY, workers=0)) == 1  # toy: in-process by default
    assert [list(b) for b in split_slots(5, 2)] == [[0, 1, 2], [3, 4]]
    with pytest.raises(ConfigError, match="env.workers: got -1"):
        load_config("toy", ["env.workers=-1"])


# ------------------------------------------------------------------ fast: toy env in workers


def test_toy_batch_is_identical_for_one_two_and_three_workers() -> None:
    adapter = MLPFlowAdapter(obs_dim=4, env_action_dim=2, chunk_size=4, action_steps=3)
    torch.manual_seed(0)
    ac = build_actor_critic(adapter, RecipeConfig(method="flow_noise"), seed=0)
    ids = [3, 4, 5, 6, 7, 8, 9]  # two waves over 5 sub-envs: the second one short
    results = []
    for workers in (1, 2, 3):
        env = make_local_env(TOY) if workers == 1 else WorkerVectorEnv(TOY, workers)
        try:
            with torch.no_grad():
                batch, stats, timing = collect_rollouts(env, ac, ids, torch.Generator().manual_seed(1), 3)
        finally:
            env.close()
        results.append((batch.to_tensors(), stats))
        assert {"reset_s", "env_step_s", "render_s", "inference_s"} <= set(timing)
    (ref, ref_stats), *others = results
    for tensors, stats in others:
        assert stats == ref_stats
        assert tensors.keys() == ref.keys()
        for key in ref:
            torch.testing.assert_close(tensors[key], ref[key], rtol=0, atol=0, msg=key)
    assert len(ref["reward"]) > len(ids)  # several chunks per episode: the comparison has substance


@pytest.mark.parametrize("noticed", ["at once", "after its pipe closed"])
def test_killed_worker_is_named_and_everything_is_released(noticed: str) -> None:
    """Whether the step finds the dead worker on receive or already on send (its pipe closed),
    the error says which signal killed it."""
    env = WorkerVectorEnv(TOY, 2)
    env.reset([10, 11, 12, 13, 14])
    name, pids = env.shm.name, env.pids
    os.kill(pids[1], signal.SIGKILL)
    if noticed != "at once":  # the step's send then meets a closed pipe before any receive
        assert wait([env._procs[1].sentinel], timeout=10)
        time.sleep(0.2)
    with pytest.raises(EnvWorkerError) as err:
        env.step(np.zeros((5, 2)))
    message = str(err.value)
    assert "env worker 1" in message and f"pid {pids[1]}" in message and "SIGKILL" in message
    assert "sub-envs [3, 4]" in message and "tasks [0, 1]" in message and "init-state ids [13, 14]" in message
    assert err.value.exit_code == ExitCode.TRANSPORT
    assert name not in segment_names(os.getpid())
    assert not _alive(pids[0])
    env.close()  # idempotent after the failure


def test_an_exception_in_a_worker_is_one_line_with_the_traceback_as_detail() -> None:
    env = WorkerVectorEnv(dataclasses.replace(TOY, suite="nowhere"), 2)  # bypasses config validation
    with pytest.raises(
        EnvWorkerError, match=r"env worker 0 .* while starting .* raised ValueError: unknown toy suite"
    ) as err:
        env.reset([0, 1, 2, 3, 4])
    assert "\n" not in err.value.message and "Traceback" in err.value.detail
    assert env.shm.name not in segment_names(os.getpid())


_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pirl_core.config import EnvConfig
    from pirl_core.envs.workers import WorkerVectorEnv

    if __name__ == "__main__":
        cfg = EnvConfig(type="toy", suite="point_reach", task_ids=[0], n_envs=2, episode_length=10**9)
        env = WorkerVectorEnv(cfg, 2)
        env.reset([0, 1])
        print(env.shm.name, *env.pids, flush=True)
        if sys.argv[1] == "loop":
            while True:
                env.step(np.zeros((2, 2)))
                time.sleep(0.01)
        # "exit": no close() on purpose; the atexit hook must release everything
    """
)


@pytest.mark.parametrize("ending", ["exit", "ctrl-c"])
def test_shared_memory_is_released_on_exit_and_on_ctrl_c(ending: str, tmp_path: Path) -> None:
    script = tmp_path / "workers_child.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), "loop" if ending == "ctrl-c" else "exit"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches the parent and its workers
    )
    try:
        line = proc.stdout.readline().split()
        assert line, proc.stderr.read()
        name, pids = line[0], [int(p) for p in line[1:]]
        assert Path("/dev/shm", name).exists()
        if ending == "ctrl-c":
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    if ending == "ctrl-c":
        assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    else:
        assert proc.returncode == 0, stderr
    assert not Path("/dev/shm", name).exists()
    assert "leaked shared_memory" not in stderr  # nothing left for the resource tracker to clean
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


# ------------------------------------------------------------------ LIBERO (slow)

# Two tasks: in one process the sub-envs' renders must not mix (see _RenderGuard in envs/libero.py).
LIBERO = EnvConfig(
    suite="libero_10", task_ids=[0, 5], n_envs=2, episode_length=4, camera_size=64, hard_reset=False
)


@pytest.fixture(scope="module")
def libero_in_process():
    env = make_local_env(LIBERO)
    yield env
    env.close()


@pytest.mark.slow
def test_libero_observations_match_for_one_and_two_workers(libero_in_process) -> None:
    """In-process (the ``workers=1`` path) vs one sub-env per worker: bit-equal observations,
    also after slot 1 switches task (its simulator is rebuilt, the old one closed). Runs first
    on the module's env: with hard_reset=false a reset's result depends on the sub-env's reset
    history, which both sides must share."""
    workers = WorkerVectorEnv(LIBERO, 2)
    try:
        for ids in ([0, 1], [2, 4]):  # [2, 4]: slot 1 goes from task 5 to task 0
            a, b = libero_in_process.reset(ids), workers.reset(ids)
            steps_a, steps_b = [], []
            for k in range(5):  # the 5th step is past episode_length: finished sub-envs do not move
                act = np.tile([0.0, 0.0, 0.1 * k, 0.0, 0.0, 0.0, -1.0], (2, 1))
                act[:, :3] += a["robot_state"]["eef"]["pos"]
                steps_a.append(libero_in_process.step(act))
                steps_b.append(workers.step(act))
            assert workers.task_ids() == libero_in_process.task_ids() == [0, 5 if ids == [0, 1] else 0]
            assert b["task"] == a["task"]
            for ra, rb in [(a, b)] + [(x.obs, y.obs) for x, y in zip(steps_a, steps_b, strict=True)]:
                _assert_same_tree(ra, rb)
            for x, y in zip(steps_a, steps_b, strict=True):
                np.testing.assert_array_equal(x.reward, y.reward)
                np.testing.assert_array_equal(x.terminated, y.terminated)
        counters = workers.time_counters()
        assert 0 < counters["render_s"] < counters["step_s"]
    finally:
        workers.close()
    assert workers.shm.name not in segment_names(os.getpid())


def _assert_same_tree(a, b, path: str = "") -> None:
    assert a.keys() == b.keys(), path
    for key in a:
        if isinstance(a[key], dict):
            _assert_same_tree(a[key], b[key], f"{path}.{key}")
        elif key != "task":
            assert np.asarray(a[key]).dtype == np.asarray(b[key]).dtype, f"{path}.{key}"
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{path}.{key}")


@pytest.mark.slow
def test_render_at_64_matches_lerobots_256_render_resized(libero_in_process) -> None:
    """Rendering at the policy's size must give what the policy saw before: LeRobot's 256 px
    render through the adapter's antialiased resize. Not bit-equal (a 64 px raster samples the
    scene at other points than a filtered 256 px one); bound: mean |diff| below 6 of 255 levels,
    and the same image flipped either way must be far worse (orientation)."""
    from lerobot.envs.utils import preprocess_observation

    from pirl_core.envs.libero import LiberoVectorEnv
    from pirl_core.policies.xvla.processors import ResizeImagesProcessorStep

    big = LiberoVectorEnv(dataclasses.replace(LIBERO, n_envs=1), render_size=256)
    try:
        raw_big = big.reset([0])
    finally:
        big.close()
    raw_small = libero_in_process.reset([0, 1])
    assert libero_in_process.render_size == 64
    # render size does not touch physics (hard_reset=False warm-up differences are <= 2e-4)
    np.testing.assert_allclose(
        raw_small["robot_state"]["joints"]["pos"][:1], raw_big["robot_state"]["joints"]["pos"], atol=1e-3
    )
    assert raw_small["pixels"].keys() == raw_big["pixels"].keys() == {"image", "image2"}
    resize = ResizeImagesProcessorStep(size=64)
    small = preprocess_observation({"pixels": {k: v[:1] for k, v in raw_small["pixels"].items()}})
    resized = resize.observation(preprocess_observation({"pixels": raw_big["pixels"]}))
    for key, img in small.items():
        if not key.startswith("observation.images."):
            continue
        assert img.shape == resized[key].shape == (1, 3, 64, 64)
        diff = (img - resized[key]).abs().mean().item() * 255
        flipped_h = (img.flip(-2) - resized[key]).abs().mean().item() * 255
        flipped_w = (img.flip(-1) - resized[key]).abs().mean().item() * 255
        assert diff < 6.0, (key, diff)
        assert min(flipped_h, flipped_w) > 3 * diff, (key, diff, flipped_h, flipped_w)
