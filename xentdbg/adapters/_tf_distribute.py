"""``tf.distribute`` as the Keras loop adapter uses it: the replicas of a strategy, a
global batch split as the strategy's own input pipeline splits it, per-replica values.

Only public ``tf.distribute`` API is used here (``num_replicas_in_sync``,
``experimental_distribute_values_from_function``, ``experimental_local_results``,
``get_replica_context``); what it relies on in TensorFlow's behaviour is cited where used.
TensorFlow is imported by the functions, never at module import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xentdbg.errors import UsageError


def check_strategy(strategy: Any, model: Any) -> int:
    """The number of replicas of ``strategy``, after checking that it is a
    ``tf.distribute.Strategy`` that holds ``model``'s variables (built under its scope).

    Raises :class:`UsageError` otherwise: a model built outside the scope trains on one
    device whatever the step does with the strategy."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.Strategy):
        raise UsageError(f"KerasLoop strategy is a {type(strategy).__name__}, not a tf.distribute.Strategy.",
                         hint="Pass the strategy whose scope() built the model and optimizer.")
    variables = list(model.trainable_variables)
    if not variables or not all(_distributed(v) for v in variables):
        raise UsageError("KerasLoop: the model's variables were not created under strategy.scope().",
                         hint="Build the model and the optimizer inside `with strategy.scope():`.")
    return int(strategy.num_replicas_in_sync)


def trains_distributed(model: Any) -> bool:
    """Whether ``model``'s variables were created under a ``tf.distribute`` strategy's
    scope (without importing TensorFlow: where it is not imported, there is none)."""
    import sys

    if "tensorflow" not in sys.modules:
        return False
    variables = list(getattr(model, "trainable_variables", []) or [])
    return bool(variables) and _distributed(variables[0])


def _distributed(variable: Any) -> bool:
    import tensorflow as tf

    value = getattr(variable, "value", variable)  # a Keras 3 Variable holds its tf.Variable in .value
    return isinstance(value, tf.distribute.DistributedValues)


def shard_sizes(batch: int, replicas: int) -> list[int]:
    """The per-replica sizes ``strategy.experimental_distribute_dataset`` gives a global
    batch of ``batch`` samples read from a ``Dataset.batch(batch)``: ``ceil(batch /
    replicas)`` for each replica in order while samples remain, the last ones taking what
    is left (50 over 4: 13, 13, 13, 11).

    A dataset batched without ``drop_remainder`` has no static batch size, so the input
    pipeline rebatches with ``_LegacyRebatchDataset``
    (tensorflow/python/distribute/input_lib.py:946-959, TF 2.21), which cuts each batch into
    minibatches of ``ceil(batch / replicas)`` (tensorflow/python/data/experimental/ops/
    distribute.py:112-145). Measured against the pipeline in
    ``tests/adapters/test_keras_loop_distributed.py``."""
    size = -(-batch // replicas)
    return [max(0, min(size, batch - r * size)) for r in range(replicas)]


def distribute_batch(strategy: Any, arrays: list[np.ndarray]) -> list[Any]:
    """Each array of one global batch as per-replica values: replica ``r`` holds the
    ``r``-th contiguous slice of :func:`shard_sizes`, placed on its device by
    ``experimental_distribute_values_from_function``."""
    import tensorflow as tf

    replicas = int(strategy.num_replicas_in_sync)
    sizes = shard_sizes(len(arrays[0]), replicas)
    starts = np.concatenate([[0], np.cumsum(sizes)])

    def per_replica(a: np.ndarray) -> Any:
        def value(ctx: Any) -> Any:
            r = ctx.replica_id_in_sync_group
            return tf.constant(a[starts[r]:starts[r + 1]])

        return strategy.experimental_distribute_values_from_function(value)

    return [per_replica(np.asarray(a)) for a in arrays]


def per_replica(strategy: Any, values: list[Any]) -> Any:
    """One per-replica value from ``values[r]`` for each replica ``r`` (tensors or arrays
    each replica already holds, such as what :func:`local_tensors` read), placed by
    ``experimental_distribute_values_from_function``."""
    import tensorflow as tf

    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.convert_to_tensor(values[ctx.replica_id_in_sync_group]))


def local_tensors(strategy: Any, variable: Any) -> list[Any]:
    """Each replica's copy of ``variable`` read as a tensor, in replica order, without a
    copy: a read aliases the variable's buffer, and TensorFlow copies on the next in-place
    update while the read is alive (``PrepareToUpdateVariable``,
    tensorflow/core/kernels/training_op_helpers.h)."""
    import tensorflow as tf

    value = getattr(variable, "value", variable)
    return [tf.convert_to_tensor(c) for c in strategy.experimental_local_results(value)]


def first_replica_only(strategy: Any, arrays: list[np.ndarray]) -> list[Any]:
    """Per-replica values that replica 0 holds ``arrays`` in and every other replica
    zeros of their shapes: summed across replicas (:func:`all_reduce_sum`) they are
    ``arrays`` exactly, whatever the order of the sum (``x + 0 = x``; ``-0.0`` becomes
    ``+0.0``). How a given, already summed gradient goes through an optimizer that sums
    the replicas' gradients."""
    import tensorflow as tf

    def per_replica(a: np.ndarray) -> Any:
        def value(ctx: Any) -> Any:
            return tf.constant(a if ctx.replica_id_in_sync_group == 0 else np.zeros_like(a))

        return strategy.experimental_distribute_values_from_function(value)

    return [per_replica(a) for a in arrays]


def local_arrays(strategy: Any, variable: Any) -> list[np.ndarray]:
    """Each replica's copy of a (Keras or TensorFlow) variable, in replica order. A
    ``MirroredVariable`` holds one per device: copies that replicas assign in their own
    context (BatchNormalization's moving statistics, created with aggregation ``none``:
    keras/src/layers/normalization/batch_normalization.py:262-275, Keras 3.15) stay apart,
    while reading the variable returns the first replica's."""
    value = getattr(variable, "value", variable)
    return [np.array(c.numpy(), copy=True) for c in strategy.experimental_local_results(value)]


def assign_local(strategy: Any, variable: Any, arrays: list[np.ndarray]) -> None:
    """Set each replica's copy of ``variable`` to its own value (see :func:`local_arrays`)."""
    value = getattr(variable, "value", variable)
    for component, a in zip(strategy.experimental_local_results(value), arrays, strict=True):
        component.assign(a)


def local_results(strategy: Any, value: Any) -> list[Any]:
    """The per-replica values of ``value`` (a ``PerReplica`` or a mirrored value), in
    replica order; a plain tensor once."""
    return list(strategy.experimental_local_results(value))


def replica_id() -> int | None:
    """The replica the calling code runs in (inside ``strategy.run``), or None outside one."""
    import tensorflow as tf

    if tf.distribute.in_cross_replica_context() or not tf.distribute.has_strategy():
        return None
    ctx = tf.distribute.get_replica_context()
    value = tf.get_static_value(ctx.replica_id_in_sync_group)
    return None if value is None else int(value)


def all_reduce_sum(grads: list[Any]) -> list[Any]:
    """The replicas' gradients summed across replicas, as Keras 3's TensorFlow optimizer
    sums them before it applies them: ``get_replica_context().all_reduce(SUM, grads)`` on
    the non-None gradients, None kept (``TFOptimizer._all_reduce_sum_gradients``,
    keras/src/backend/tensorflow/optimizer.py:141-180, Keras 3.15). The same collective on
    the same inputs: measured bitwise equal to what the optimizer applied
    (``tests/replay/test_neutral_capture.py``)."""
    import tensorflow as tf

    present = [g for g in grads if g is not None]
    reduced = iter(tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, present)
                   if present else [])
    return [None if g is None else next(reduced) for g in grads]
