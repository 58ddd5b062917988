"""Diagnose tf_keras Dropout(seed=1): which legacy op seeds does each trace get?
Run: python legacy_seed_trace.py [A|Cfwd]"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL is set)
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from tf_keras.src import backend as B  # noqa: E402

orig = B.RandomGenerator.make_legacy_seed


def spy(self):
    s = orig(self)
    g = tf.compat.v1.get_default_graph()
    print("  make_legacy_seed ->", s, "in graph", getattr(g, "name", type(g).__name__))
    return s


B.RandomGenerator.make_legacy_seed = spy
variant = sys.argv[1] if len(sys.argv) > 1 else "A"
tf_keras.utils.set_random_seed(0)
x = np.ones((16, 4), "float32")
y = np.ones((16, 1), "float32")


class M(tf_keras.Model):
    def train_step(self, data):
        out = super().train_step(data)
        if variant == "Cfwd":
            self(data[0], training=True)
        return out


inp = tf_keras.Input((4,))
h = tf_keras.layers.Dropout(0.5, seed=1)(tf_keras.layers.Dense(8)(inp))
m = M(inp, tf_keras.layers.Dense(1)(h))
m.compile("sgd", "mse")
print("fit:")
m.fit(x, y, batch_size=16, epochs=2, verbose=0)
