"""Data parallelism over the devices of one machine or of several (D2L 12.5-12.6).

A run on N devices keeps params, optimizer state and model state replicated on every device and
shards each batch along its first axis over a one-axis `jax.sharding.Mesh` ("data"). The train
step is the same program as on one device: XLA's partitioner splits the gathered batch, runs
each shard's forward and backward pass on its device, and all-reduces the gradients (and
batch-norm statistics, which therefore are those of the whole batch, as on one device). The
data set itself is replicated: each device gathers the examples of its shard of every batch.

With several processes (`jax.distributed`, one per machine), the mesh spans every process's
devices; each process computes its devices' shards, and only process 0 writes the run directory.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..errors import ConfigError

AXIS = "data"


class Devices(NamedTuple):
    """The mesh a run trains on; None for the plain one-device run."""

    mesh: Mesh

    @property
    def count(self) -> int:
        return self.mesh.devices.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def batch(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    def put(self, tree: Any) -> Any:
        """`tree` replicated on every device of the mesh (host arrays and device arrays alike)."""
        return jax.tree_util.tree_map(lambda a: _replicate(a, self.replicated), tree)


def _replicate(a, sharding: NamedSharding):
    if jax.process_count() == 1:
        return jax.device_put(a, sharding)
    # several processes: every process holds the same values; each provides its own devices' copies
    a = jax.device_get(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def resolve(requested: int | str, batch_size: int, source: str = "trainer.devices") -> Devices | None:
    """The mesh for `trainer.devices` (None: one device, the plain run).

    Raises:
        ConfigError: more devices than there are, or a batch that does not split evenly.
    """
    available = jax.devices()
    count = len(available) if requested == "all" else int(requested)
    if batch_size % count:
        raise ConfigError(f"{source}: data.batch_size ({batch_size}) does not divide evenly over {count} devices")
    if count > len(available):
        raise ConfigError(f"{source}: {count} devices asked for, but this run sees {len(available)} "
                          f"({jax.default_backend()}); on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                          "makes N virtual devices")
    if jax.process_count() > 1 and count != len(available):  # each process must hold some of the mesh
        raise ConfigError(f"{source}: {count} of the {len(available)} devices of {jax.process_count()} processes; a run over "
                          f"several processes trains on all their devices: set {source} to {len(available)} or 'all'")
    if count == 1 and jax.process_count() == 1:
        return None
    import numpy as np

    return Devices(Mesh(np.asarray(available[:count]), (AXIS,)))


def shard_batch(batch: Any, devices: Devices | None) -> Any:
    """Inside the jitted step: split the gathered batch along its first axis over the mesh."""
    if devices is None:
        return batch
    return jax.tree_util.tree_map(lambda a: jax.lax.with_sharding_constraint(a, devices.batch), batch)


CLUSTER_ENV = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")  # what `auto` reads a cluster from


def start_processes(coordinator: str, num_processes: int | None, process_id: int | None, timeout: float = 300) -> None:
    """Join a run over several processes (`jax.distributed`), before JAX touches a device.
    `coordinator` is process 0's HOST:PORT, or "auto" to let JAX read the cluster scheduler's
    environment (SLURM, Open MPI). The processes first meet (`core.training.rendezvous`), each
    waiting at most `timeout` seconds for the others.

    Raises:
        ConfigError: a malformed or unresolvable address, a port out of range, a missing or
            out-of-range process count or id, `auto` outside a cluster, or a process missing
            after `timeout` seconds (named).
    """
    import os
    import socket
    import sys

    from .rendezvous import meet

    if coordinator == "auto":
        if not any(os.environ.get(k) for k in CLUSTER_ENV):
            raise ConfigError("--coordinator auto: no cluster scheduler found (SLURM, Open MPI: none of "
                              f"{', '.join(CLUSTER_ENV)} is set); give --coordinator HOST:PORT with --num-processes "
                              "and --process-id")
        try:
            jax.distributed.initialize(initialization_timeout=int(timeout))
        except (ValueError, RuntimeError) as err:
            raise ConfigError(f"--coordinator auto: {err}") from None
        return
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--coordinator {coordinator!r}: expected HOST:PORT (e.g. 10.0.0.1:1234) or auto")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"--coordinator {coordinator!r}: port {port} is out of range (1 to 65535)")
    try:
        socket.getaddrinfo(host.strip("[]"), int(port))
    except OSError as err:
        raise ConfigError(f"--coordinator {coordinator!r}: host {host!r} cannot be resolved ({err.strerror or err})") from None
    if num_processes is None or process_id is None:
        raise ConfigError("--coordinator needs --num-processes and --process-id (or DLRUN_NUM_PROCESSES, DLRUN_PROCESS_ID)")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id {process_id}: expected 0 to {num_processes - 1} (--num-processes {num_processes})")
    others = f"processes 1-{num_processes - 1}" if process_id == 0 else "process 0"
    print(f"process {process_id} of {num_processes}: waiting up to {timeout:g} s (--peer-timeout) for {others} at "
          f"{coordinator}", file=sys.stderr, flush=True)
    meet(host.strip("[]"), int(port), num_processes, process_id, timeout)
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id,
                               initialization_timeout=int(max(timeout, 1)))


def is_primary() -> bool:
    """Process 0 writes the run directory; the others only train."""
    return jax.process_index() == 0
