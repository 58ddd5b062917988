"""One MNIST classifier trained by a custom loop on one device, and under
``tf.distribute.MirroredStrategy`` on 4 replicas, the pattern of TensorFlow's
"Custom training with tf.distribute.Strategy" tutorial. The global batch is the same
(64): each replica trains on 16 samples of it.

On a machine without 4 GPUs the 4 devices are logical CPU devices (``devices`` below);
with 4 GPUs the same code runs on them.
"""

import tensorflow as tf

import xentdbg

REPLICAS = 4


def devices(n: int = REPLICAS) -> list[str]:
    """``n`` devices for MirroredStrategy: the first ``n`` GPUs when there are that many,
    else ``n`` logical devices on the CPU (set before TensorFlow initializes its devices)."""
    if len(tf.config.list_physical_devices("GPU")) >= n:
        return [f"/gpu:{i}" for i in range(n)]
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) != n:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    return [f"/cpu:{i}" for i in range(n)]


def build(batchnorm: bool = False, synchronized: bool = False, dropout: float = 0.0) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(0)
    layers = [tf.keras.Input((784,)), tf.keras.layers.Dense(64, activation="relu")]
    if batchnorm:
        layers.append(tf.keras.layers.BatchNormalization(synchronized=synchronized))
    if dropout:
        layers.append(tf.keras.layers.Dropout(dropout))
    layers.append(tf.keras.layers.Dense(10))
    return tf.keras.Sequential(layers)


def one_device(batchnorm: bool = False, dropout: float = 0.0) -> xentdbg.KerasLoop:
    model = build(batchnorm, dropout=dropout)
    optimizer = tf.keras.optimizers.SGD(0.1)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return xentdbg.KerasLoop(model, train_step, optimizer)


def mirrored(batchnorm: bool = False, scaled: bool = True, synchronized: bool = False,
             learning_rate: float = 0.1, dropout: float = 0.0) -> xentdbg.KerasLoop:
    strategy = tf.distribute.MirroredStrategy(devices())
    with strategy.scope():
        model = build(batchnorm, synchronized, dropout)
        optimizer = tf.keras.optimizers.SGD(learning_rate)
        per_example = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    def step_fn(x, y):
        with tf.GradientTape() as tape:
            losses = per_example(y, model(x, training=True))
            # The optimizer sums the replicas' gradients: each replica's loss must be
            # divided by the global batch, not by its own.
            loss = tf.nn.compute_average_loss(losses) if scaled else tf.reduce_mean(losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(x, y):
        per_replica = strategy.run(step_fn, args=(x, y))
        return strategy.reduce("SUM", per_replica, axis=None)

    return xentdbg.KerasLoop(model, train_step, optimizer, strategy=strategy)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def single(data):
    """One device, global batch 64."""
    return one_device()


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def replicas4(data):
    """4 replicas of 16, each loss divided by the global batch (compute_average_loss)."""
    return mirrored()


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def unscaled(data):
    """4 replicas, each loss the mean over its own 16 samples: the summed gradients are 4x."""
    return mirrored(scaled=False)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def single_bn(data):
    """One device with BatchNormalization: batch statistics over all 64 samples."""
    return one_device(batchnorm=True)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def replicas4_bn(data):
    """4 replicas with BatchNormalization: each normalizes with its own 16 samples' statistics."""
    return mirrored(batchnorm=True)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def replicas4_syncbn(data):
    """4 replicas with BatchNormalization(synchronized=True): statistics all-reduced over the 64 samples."""
    return mirrored(batchnorm=True, synchronized=True)



@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def replicas4_lr_scaled(data):
    """4 replicas with the learning rate multiplied by the replica count (0.4) for the same global batch."""
    return mirrored(learning_rate=0.1 * REPLICAS)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def single_dropout(data):
    """One device with Dropout(0.3) after the hidden layer."""
    return one_device(dropout=0.3)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def replicas4_dropout(data):
    """4 replicas with Dropout(0.3): each replica draws its own masks."""
    return mirrored(dropout=0.3)


def fitted(batchnorm: bool = False, replicas: int = 1) -> xentdbg.KerasFit:
    """The same model trained by ``model.fit``, on one device or, built and compiled under
    ``MirroredStrategy``'s scope, on ``replicas`` replicas: fit then splits each global batch
    over the replicas, scales each replica's loss by 1/replicas and sums their gradients."""
    strategy = tf.distribute.MirroredStrategy(devices(replicas)) if replicas > 1 else tf.distribute.get_strategy()
    with strategy.scope():
        model = build(batchnorm)
        model.compile(tf.keras.optimizers.SGD(0.1), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return xentdbg.KerasFit(model, shuffle=False)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def fit_single(data):
    """model.fit on one device, global batch 64."""
    return fitted()


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def fit_replicas4(data):
    """model.fit under MirroredStrategy, 4 replicas of 16."""
    return fitted(replicas=REPLICAS)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def fit_single_bn(data):
    """model.fit on one device with BatchNormalization."""
    return fitted(batchnorm=True)


@xentdbg.declare(task="digits", labels="sparse", pixels="unit", batch_size=64)
def fit_replicas4_bn(data):
    """model.fit under MirroredStrategy with BatchNormalization: per-replica statistics."""
    return fitted(batchnorm=True, replicas=REPLICAS)
