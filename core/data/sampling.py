"""How an epoch walks through a training set: which examples, in which batches.

An epoch is a (num_batches, batch_size) array of example indices, drawn on the device from the
run's key and the epoch number (so a resumed run sees the same batches). Most data sets shuffle
their examples. A language-model data set holds every window of its corpus (stride 1,
`core.data.text`), and the 0.16 edition's two partitionings (D2L 8.3.4) pick windows from it:

- `random`: from a random offset in [0, num_steps), the corpus is cut into non-overlapping
  windows, taken in random order; a batch's windows are unrelated, so a recurrent network
  starts each batch from a fresh hidden state.
- `sequential`: from a random offset in [0, num_steps], the corpus is split into batch_size
  rows of equal length, and batch i holds window i of every row; row r of a batch continues
  row r of the batch before, so the hidden state is carried from batch to batch.

The number of batches per epoch does not depend on the offset, so every epoch has the same
shape and compiles once.

- `stream`: an endless stream of shuffled passes over the examples, each epoch the next
  `stream_steps` batches of it, so that an epoch can be shorter or longer than one pass (D2L
  11.5 measures the loss every 200 examples).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

KINDS = ("shuffle", "windows", "random", "sequential", "stream")


class Sampling(NamedTuple):
    kind: str = "shuffle"  # shuffle and windows: shuffled examples; random, sequential: partitions
    num_steps: int = 0  # the window length, for the partitionings
    drop_last: bool = True  # shuffle, windows: leave out the remainder; False: a last, partial batch
    stream_steps: int = 0  # stream: batches per epoch

    def keeps_partial_batch(self, num_examples: int, batch_size: int) -> bool:
        """An epoch ends with a partial batch, padded to full size with index -1 (the
        trainer counts the padding for nothing), as PyTorch's DataLoader does by default."""
        return self.kind in ("shuffle", "windows") and not self.drop_last and num_examples % batch_size != 0

    @property
    def carries_state(self) -> bool:
        """Row r of a batch continues row r of the batch before."""
        return self.kind == "sequential"


def steps_per_epoch(sampling: Sampling, num_examples: int, batch_size: int) -> int:
    if sampling.kind in ("shuffle", "windows"):
        return -(-num_examples // batch_size) if sampling.keeps_partial_batch(num_examples, batch_size) else num_examples // batch_size
    if sampling.kind == "stream":
        return sampling.stream_steps
    t = sampling.num_steps
    if sampling.kind == "random":
        return (num_examples // t) // batch_size
    if sampling.kind == "sequential":
        return ((num_examples - t) // batch_size) // t
    raise ValueError(f"unknown sampling '{sampling.kind}'; expected one of {', '.join(KINDS)}")


def shuffled(key: jax.Array, num_examples: int, batch_size: int, drop_last: bool = True) -> jax.Array:
    """A permutation of the examples in whole batches: the remainder (a different one each
    epoch) is left out, or with `drop_last` False it forms a last batch padded with -1, so
    that every step has the same shape."""
    perm = jax.random.permutation(key, num_examples)
    if drop_last:
        num_batches = num_examples // batch_size
        return perm[: num_batches * batch_size].reshape(num_batches, batch_size)
    num_batches = -(-num_examples // batch_size)
    return jnp.pad(perm, (0, num_batches * batch_size - num_examples), constant_values=-1).reshape(num_batches, batch_size)


def random_partition(key: jax.Array, num_windows: int, batch_size: int, num_steps: int) -> jax.Array:
    """Windows starting at offset + k num_steps, k in random order."""
    k_offset, k_perm = jax.random.split(key)
    offset = jax.random.randint(k_offset, (), 0, num_steps)
    count = num_windows // num_steps  # offset + (count - 1) num_steps < num_windows for any offset
    num_batches = count // batch_size
    k = jax.random.permutation(k_perm, count)[: num_batches * batch_size]
    return (offset + k * num_steps).reshape(num_batches, batch_size)


def sequential_partition(key: jax.Array, num_windows: int, batch_size: int, num_steps: int) -> jax.Array:
    """Batch i holds the windows at offset + r row_length + i num_steps, r < batch_size."""
    offset = jax.random.randint(key, (), 0, num_steps + 1)
    row_length = (num_windows - num_steps) // batch_size  # the last start stays below num_windows
    num_batches = row_length // num_steps
    starts = offset + jnp.arange(batch_size)[None, :] * row_length + jnp.arange(num_batches)[:, None] * num_steps
    return starts


def stream(key: jax.Array, epoch: int | jax.Array, num_examples: int, batch_size: int, steps: int) -> jax.Array:
    """Batches `steps * (epoch - 1)` up to `steps * epoch` of the stream of passes, pass p a
    permutation drawn from `fold_in(key, p)`."""
    size = steps * batch_size
    start = jnp.maximum(epoch - 1, 0) * size  # epoch 0 (the compile-time example) is epoch 1's shape
    first_pass = start // num_examples
    passes = first_pass + jnp.arange(size // num_examples + 2)  # enough passes to cover the epoch
    perms = jax.vmap(lambda p: jax.random.permutation(jax.random.fold_in(key, p), num_examples))(passes)
    flat = perms.reshape(-1)
    return jax.lax.dynamic_slice(flat, (start - first_pass * num_examples,), (size,)).reshape(steps, batch_size)


def epoch_order(sampling: Sampling, key: jax.Array, epoch: int | jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """The epoch's (num_batches, batch_size) example indices, fresh for each epoch."""
    if sampling.kind == "stream":
        return stream(key, epoch, num_examples, batch_size, sampling.stream_steps)
    key = jax.random.fold_in(key, epoch)
    if sampling.kind in ("shuffle", "windows"):
        return shuffled(key, num_examples, batch_size, sampling.drop_last)
    if sampling.kind == "random":
        return random_partition(key, num_examples, batch_size, sampling.num_steps)
    if sampling.kind == "sequential":
        return sequential_partition(key, num_examples, batch_size, sampling.num_steps)
    raise ValueError(f"unknown sampling '{sampling.kind}'; expected one of {', '.join(KINDS)}")
