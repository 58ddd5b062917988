"""Every Keras 3 internal xentdbg relies on (TensorFlow and JAX backends), in one place.

The Keras adapters (``keras_fit``, ``keras_loop``, ``_keras_hooks``) reach no private
attribute of a Keras or TensorFlow object except through the functions below. Each
cites the installed source it was written against (Keras 3.15.1, TensorFlow 2.21.0,
paths relative to ``site-packages``).

Checks: the installed Keras version against :data:`KERAS` once, on first use (and
TensorFlow against :data:`TENSORFLOW` for the one TensorFlow internal); each accessor
checks that its internal exists. Failures raise :class:`xentdbg.errors.UnsupportedLibrary`.

Nothing here imports Keras or TensorFlow: the accessors get their objects from the
adapters, which have imported them already (:func:`epoch_iterators_kept` looks its
Keras module up in ``sys.modules``, where the model's import put it). Every accessor is
plain Python; none adds an op to a graph it is traced into.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from xentdbg.adapters._library_guard import VersionRange, checked_version, internal_attr, missing_internal

KERAS = VersionRange("keras", (3, 15), (3, 16))
"""The Keras versions this module was written and tested for (pyproject.toml pins the same)."""

TENSORFLOW = VersionRange("tensorflow", (2, 18), (2, 22))
"""The TensorFlow versions pyproject.toml allows, for :func:`tf_function_jit_compile`."""


# -- version checks ------------------------------------------------------------------

def keras_version() -> str:
    """The installed Keras version, checked against :data:`KERAS` on the first call."""
    return checked_version(KERAS)


def tensorflow_version() -> str:
    """The installed TensorFlow version, checked against :data:`TENSORFLOW` on the first call."""
    return checked_version(TENSORFLOW)


def _keras_attr(obj: Any, name: str, internal: str, where: str) -> Any:
    """``obj.<name>``, after the version check; :class:`UnsupportedLibrary` when missing."""
    return internal_attr(KERAS, obj, name, internal, where)


# -- layers ----------------------------------------------------------------------------

def flatten_layers(layer: Any, recursive: bool) -> list[Any]:
    """The sublayers of ``layer`` (itself excluded) in the order Keras tracks them: all
    descendants when ``recursive``, else only its direct children."""
    # keras/src/layers/layer.py:1708  Layer._flatten_layers(include_self=True, recursive=True)
    method = _keras_attr(layer, "_flatten_layers", "Layer._flatten_layers", "keras/src/layers/layer.py:1708")
    return list(method(include_self=False, recursive=recursive))


def call_has_training_arg(layer: Any) -> bool:
    """Whether ``layer.call`` takes a ``training`` argument (what fit passes it)."""
    # keras/src/layers/layer.py:321  set in Layer.__init__ from call's signature; the JAX
    # trainer reads it the same way, keras/src/backend/jax/trainer.py:52
    return bool(_keras_attr(layer, "_call_has_training_arg", "Layer._call_has_training_arg",
                            "keras/src/layers/layer.py:321"))


@contextlib.contextmanager
def override_losses(model: Any, losses: list[Any]) -> Iterator[None]:
    """While active, ``model.losses`` returns ``losses`` (the forward-pass losses a
    ``stateless_call`` returned), as ``compute_loss_and_updates`` does before
    ``stateless_compute_loss``. Sets nothing when ``losses`` is empty."""
    # keras/src/layers/layer.py:315  Layer._losses_override = [] in Layer.__init__;
    # keras/src/layers/layer.py:1314 the ``losses`` property returns it when non-empty;
    # keras/src/backend/jax/trainer.py:64-66,79  the JAX trainer sets and clears it so.
    _keras_attr(model, "_losses_override", "Layer._losses_override", "keras/src/layers/layer.py:315")
    if not losses:
        yield
        return
    model._losses_override = losses
    try:
        yield
    finally:
        model._losses_override = []


# -- JAX backend fit ---------------------------------------------------------------------

_OBSERVED: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
"""The train functions :func:`observe_jax_train_steps` installed (never wrapped twice)."""


def _jax_train_state(state: Any) -> tuple[Any, Any, Any, Any]:
    # keras/src/backend/jax/trainer.py:124-129  train_step unpacks state as (trainable_variables,
    # non_trainable_variables, optimizer_variables, metrics_variables); fit likewise, :463-468
    if not (isinstance(state, (tuple, list)) and len(state) == 4):
        raise missing_internal(KERAS, keras_version(), "the JAX trainer's 4-tuple train state "
                               "(trainable, non-trainable, optimizer, metrics variables)",
                               "keras/src/backend/jax/trainer.py:124", on=state)
    return state[0], state[1], state[2], state[3]


def jax_train_state_variables(state: Any) -> tuple[Any, Any, Any]:
    """``(trainable, non_trainable, metrics)`` variable values of the JAX trainer's
    train state (its optimizer variables are left out)."""
    trainable, non_trainable, _, metrics = _jax_train_state(state)
    return trainable, non_trainable, metrics


def jax_train_state_optimizer_variables(state: Any) -> Any:
    """The optimizer variable values of the JAX trainer's train state, in
    ``optimizer.variables`` order (what ``optimizer.stateless_apply`` takes)."""
    # keras/src/backend/jax/trainer.py:124-129 (see above); :149-153 train_step passes
    # state[2] to self.optimizer.stateless_apply(optimizer_variables, grads, trainable_variables)
    return _jax_train_state(state)[2]


def observe_jax_train_steps(model: Any, observe: Callable[[Any, Any], None]) -> None:
    """Make the JAX backend's fit call ``observe(state, data)`` before each train step,
    with the train state and the batch that step gets; the (jitted) step is untouched.

    ``model.make_train_function`` is wrapped so that the train function it builds gets
    a Python wrapper that takes the batch from fit's iterator, calls ``observe`` and
    hands the step an iterator over that same batch."""
    # keras/src/backend/jax/trainer.py:261-285  make_train_function(force=False) stores
    # model.train_function; :256-257 with steps_per_execution == 1 it is
    # iterator_step(state, iterator) -> step_function(state, next(iterator));
    # :462 fit calls it as self.train_function(state, iterator).
    original_make = _keras_attr(model, "make_train_function", "JAXTrainer.make_train_function",
                                "keras/src/backend/jax/trainer.py:261")

    def make_train_function(force: bool = False) -> Any:
        result = original_make(force)
        step_fn = _keras_attr(model, "train_function", "Trainer.train_function",
                              "keras/src/backend/jax/trainer.py:285")
        if step_fn not in _OBSERVED:
            def train_function(state: Any, iterator: Iterator[Any]) -> Any:
                data = next(iterator)
                observe(state, data)
                return step_fn(state, iter([data]))

            _OBSERVED.add(train_function)
            model.train_function = train_function
        return result

    model.make_train_function = make_train_function


def jax_trainer_state(model: Any) -> tuple[Any, Any]:
    """``(trainable, non_trainable)`` variable values after the step whose
    ``on_train_batch_end`` is running (JAX backend fit, before it syncs the model)."""
    # keras/src/backend/jax/trainer.py:472-477  fit sets model._jax_state to a dict of the
    # step's new state, then calls callbacks.on_train_batch_end (:479)
    where = "keras/src/backend/jax/trainer.py:472"
    state = _keras_attr(model, "_jax_state", "JAXTrainer._jax_state", where)
    if not (isinstance(state, dict) and "trainable_variables" in state and "non_trainable_variables" in state):
        raise missing_internal(KERAS, keras_version(), "JAXTrainer._jax_state['trainable_variables' and "
                               "'non_trainable_variables'] during on_train_batch_end", where, on=model)
    return state["trainable_variables"], state["non_trainable_variables"]


def jax_state_sync(model: Any) -> None:
    """Write the JAX backend fit's state back into the model's variables (nothing when
    fit already did)."""
    # keras/src/backend/jax/trainer.py:880  JAXTrainer.jax_state_sync (no underscore, but
    # undocumented: not part of the public keras.Model API)
    _keras_attr(model, "jax_state_sync", "JAXTrainer.jax_state_sync", "keras/src/backend/jax/trainer.py:880")()


# -- optimizers --------------------------------------------------------------------------

def optimizer_trainable_variables(optimizer: Any) -> list[Any]:
    """The variables ``optimizer.apply(grads)`` updates when given no variables."""
    # keras/src/optimizers/base_optimizer.py:227  set by build(variables);
    # keras/src/optimizers/base_optimizer.py:495  apply's default for trainable_variables=None
    return _keras_attr(optimizer, "_trainable_variables", "BaseOptimizer._trainable_variables",
                       "keras/src/optimizers/base_optimizer.py:227")


# -- TensorFlow (the Keras 3 TensorFlow backend's train steps) ----------------------------

@contextlib.contextmanager
def epoch_iterators_kept(kept: list[Any]) -> Iterator[None]:
    """While active, every ``tf.data`` iterator ``fit`` opens on the TensorFlow backend
    (two per epoch, at its start and at its end) is also appended to ``kept``, so that
    ``fit`` dropping one does not destroy it. Only the iterators' lifetime changes: which
    batches they yield, and in which order, does not.

    Why: destroying a ``tf.data`` iterator can wait for its autotuning thread
    (``tensorflow::data::model::Model::OptimizeLoop``), which sleeps between tuning rounds
    for a period between 10 ms and 60 s (``kOptimizationPeriodMinMs``,
    ``kOptimizationPeriodMaxMs``: tensorflow/include/tensorflow/core/framework/model.h:1054).
    Python frees the dropped iterator on the main thread with the GIL held, so the whole
    process stalls until that thread wakes: up to seconds after a long epoch. Measured on
    this project's 2-core machine (TensorFlow 2.21.0, Keras 3.15.1, 2026-11-25): two runs
    of a plain ``model.fit`` of the bench's convnet, 75 batches per epoch, stalled 2.47 s
    and 0.19 s at two of their six epoch ends; with the iterators kept, no epoch end took
    over 0.023 s. The stalled process's native stack: ``~RootDataset::Iterator`` ->
    ``~LogicalThreadWrapper`` -> ``Notification::WaitForNotification``, while
    ``Model::OptimizeLoop`` waited on its condition variable (gdb). Keeping only moves the
    wait to where ``kept`` is freed (measured: clearing the kept iterators 5 s after such a
    fit took 2.54 s in one run of three), so keep them only where they are never freed:
    :func:`xentdbg._exit.kept_until_exit`. A kept iterator costs its idle autotuning thread."""
    # keras/src/backend/tensorflow/trainer.py:758  TFEpochIterator._get_iterator returns
    # the (distributed) dataset; keras/src/trainers/epoch_iterator.py:110-111 call iter()
    # on it at each epoch's start (fit passes no steps_per_epoch), :124-125 again at its
    # end, each replacing self._current_iterator, and :128 for an unknown epoch length.
    # Model (keras/src/models/model.py:22) imports this module with the TF backend.
    version = keras_version()
    module = sys.modules.get("keras.src.backend.tensorflow.trainer")
    epoch_iterator = getattr(module, "TFEpochIterator", None)
    if epoch_iterator is None or "_get_iterator" not in vars(epoch_iterator):
        raise missing_internal(KERAS, version, "TFEpochIterator._get_iterator",
                               "keras/src/backend/tensorflow/trainer.py:758")
    original = vars(epoch_iterator)["_get_iterator"]

    class Kept:
        """The dataset, whose ``iter()`` also keeps the iterator it returns."""

        def __init__(self, dataset: Any):
            self.dataset = dataset

        def __iter__(self) -> Any:
            iterator = iter(self.dataset)
            kept.append(iterator)
            return iterator

    epoch_iterator._get_iterator = lambda self: Kept(original(self))
    try:
        yield
    finally:
        epoch_iterator._get_iterator = original


def tf_function_jit_compile(function: Any) -> Any:
    """The ``jit_compile`` a ``tf.function`` was created with (None: TensorFlow decides)."""
    # tensorflow/python/eager/polymorphic_function/polymorphic_function.py:522
    # Function.__init__ stores jit_compile as self._jit_compile; no public getter
    version = tensorflow_version()
    if not hasattr(function, "_jit_compile"):
        raise missing_internal(TENSORFLOW, version, "tf.function's Function._jit_compile",
                               "tensorflow/python/eager/polymorphic_function/polymorphic_function.py:522",
                               on=function)
    return function._jit_compile
