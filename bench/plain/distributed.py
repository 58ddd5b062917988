"""``examples/distributed/model.py``'s custom loop as a user runs it, on one device
(``single``) or under ``tf.distribute.MirroredStrategy`` on 4 replicas (``replicas4``):
Dense 64 ReLU, Dense 10, SGD 0.1, sparse cross-entropy on logits, seed 0, digits with
pixels in 0..1; each global batch fed through ``experimental_distribute_dataset`` on the
replicas. Imports no xentdbg.

Usage: python bench/plain/distributed.py single|replicas4 STEPS SUBSET BATCH [--save FILE.npz]
"""

import sys

import numpy as np
import tensorflow as tf
from _mnist import load, save_option

REPLICAS = 4
argv, save = save_option(sys.argv)
kind = argv[1]
steps, subset, batch = (int(a) for a in argv[2:5])
if kind == "replicas4":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])
else:
    strategy = tf.distribute.get_strategy()
x, y = load(subset, "digits", "unit", "sparse")

with strategy.scope():
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((784,)), tf.keras.layers.Dense(64, activation="relu"),
                                 tf.keras.layers.Dense(10)])
    optimizer = tf.keras.optimizers.SGD(0.1)
    per_example = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")


def step_fn(x, y):
    with tf.GradientTape() as tape:
        loss = tf.nn.compute_average_loss(per_example(y, model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss


@tf.function
def train_step(x, y):
    return strategy.reduce("SUM", strategy.run(step_fn, args=(x, y)), axis=None)


# one dataset per epoch's batches, in stored order: the global batches of steps 0..steps-1
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
if kind == "replicas4":
    dataset = strategy.experimental_distribute_dataset(dataset)
done = 0
while done < steps:
    for xb, yb in dataset:
        loss = train_step(xb, yb)
        done += 1
        if done == steps:
            break
np.asarray(loss)
if save:
    np.savez(save, *[np.asarray(v) for v in model.trainable_variables])
