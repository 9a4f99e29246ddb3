"""Where a sweep's tasks run: in this process, in a pool of worker processes, or on a Ray cluster.

Each executor takes a picklable task function and the tasks, and yields (task, result) pairs as
tasks finish, so that results are reported as they come.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable, Iterator, Sequence, TypeVar

from ..errors import ExecutorError

T = TypeVar("T")
R = TypeVar("R")



def visible_gpus() -> list[str]:
    """The NVIDIA GPUs this process may use: `CUDA_VISIBLE_DEVICES`, else every /dev/nvidiaN."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    from pathlib import Path

    return sorted((p.name.removeprefix("nvidia") for p in Path("/dev").glob("nvidia[0-9]*")), key=int)


# after its parent is gone, a worker's time to stop at a checkpoint before it is ended: a trial
# training a long epoch as one program cannot stop inside it, and must not outlive its sweep long
WORKER_GRACE_SECONDS = 5


def die_with_parent(parent: int, grace: float = WORKER_GRACE_SECONDS) -> None:
    """End this worker when the process that started it dies, however it dies (SIGKILL too):
    on Linux the kernel sends SIGTERM at once (PR_SET_PDEATHSIG), which stops a training trial
    after its current step with a checkpoint; everywhere, a watchdog thread notices the new
    parent pid and sends SIGTERM, then ends the process after `grace` seconds whatever it does."""
    import ctypes
    import signal
    import threading
    import time

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog alone

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(143)

    threading.Thread(target=watch, name="dlrun-parent-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the kernel was told
        os.kill(os.getpid(), signal.SIGTERM)


def _limit_threads(counter, cpus: list[int], per_worker: int, gpus: list[str] = (), parent: int | None = None) -> None:
    """Pin this worker process to its share of the cores before JAX starts, so that N workers
    do not each start a thread per core (XLA sizes its thread pool from the affinity mask); on
    a host with GPUs, worker k sees GPU k mod their number only, so trials pack across GPUs.
    The worker ends with its parent (`die_with_parent`)."""
    if parent is not None:
        die_with_parent(parent)
    with counter.get_lock():
        k = counter.value
        counter.value += 1
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[k % len(gpus)]
    share = [cpus[(k * per_worker + j) % len(cpus)] for j in range(per_worker)]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, share)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(per_worker)


def execute_local(fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[T, R]]:
    """One task after another, in this process."""
    for task in tasks:
        yield task, fn(task)


def execute_pool(fn: Callable[[T], R], tasks: Sequence[T], workers: int) -> Iterator[tuple[T, R]]:
    """A pool of `workers` processes (spawned: JAX does not survive fork), each on its share of
    cores and, on a host with GPUs, on one GPU."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    per_worker = max(1, len(cpus) // workers)
    counter = ctx.Value("i", 0)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_limit_threads,
                             initargs=(counter, cpus, per_worker, visible_gpus(), os.getpid())) as pool:
        futures = {pool.submit(fn, t): t for t in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:  # Ctrl-C, SIGTERM, a failed task: stop the workers, each after a checkpoint
            stop_workers(pool)
            raise


def stop_workers(pool, grace: float = WORKER_GRACE_SECONDS) -> None:
    """SIGTERM every worker of `pool` (a trial stops after its current step, with a checkpoint),
    wait up to `grace` seconds, then kill what is left."""
    import signal
    import time

    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()


def execute_ray(fn: Callable[[T], R], tasks: Sequence[T], address: str | None, cpus_per_task: int) -> Iterator[tuple[T, R]]:
    """Each task as a Ray task on the cluster at `address` (a local one if None). Trial
    directories are written by the Ray workers: on several machines, the sweep directory must
    be on storage that all of them share."""
    try:
        import ray
    except ImportError:
        raise ExecutorError("the Ray executor needs Ray: pip install 'dlrun[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, log_to_driver=True, **({} if address else {"include_dashboard": False}))
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ExecutorError(f"cannot start or reach the Ray cluster at {address or '(a new local one)'}: {err}") from None
    try:
        remote = ray.remote(fn)
        refs = {remote.options(num_cpus=cpus_per_task).remote(t): t for t in tasks}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            yield refs.pop(done[0]), ray.get(done[0])
    finally:
        if started:
            ray.shutdown()
