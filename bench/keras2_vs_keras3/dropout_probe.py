"""Dropout RNG probe. Each variant runs in a fresh subprocess.
lib in {tf_keras, keras3}; seed in {none, 1}; variant:
  A    : set_random_seed(0); fit 4 steps (batch=full data, shuffle=False, SGD 0.1)
  A2   : identical to A (reproducibility)
  Bfwd : A + after every batch call a SEPARATE tf.function doing model(x, training=True)
  Brng : A + after every batch call a separate tf.function doing tf.random.uniform
  Beag : A + after every batch an eager tf.random.uniform call
  Ctr  : A, but train_step subclassed to add 5 tf.identity ops BEFORE super().train_step
  Crng : same, but adds one tf.random.uniform (unseeded) BEFORE super().train_step
  Cfwd : same, but an extra discarded model(x, training=True) AFTER super().train_step
Prints a checksum of the final weights.  Run: python dropout_probe.py  (driver)"""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def child(libname, seed, variant):
    import warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    import tensorflow as tf
    lib = __import__("tf_keras" if libname == "tf_keras" else "keras")
    lib.utils.set_random_seed(0)
    rs = np.random.default_rng(123)
    x = rs.normal(size=(16, 4)).astype("float32")
    y = rs.normal(size=(16, 1)).astype("float32")
    L = lib.layers
    base = lib.Model
    if variant.startswith("C"):
        class M(lib.Model):
            def train_step(self, data):
                xx, yy = data
                if variant == "Ctr":
                    for _ in range(5):
                        xx = tf.identity(xx)
                if variant == "Crng":
                    xx = xx + 0.0 * tf.reduce_sum(tf.random.uniform([1]))
                out = super().train_step((xx, yy))
                if variant == "Cfwd":
                    self(xx, training=True)
                return out
        base = M
    inp = L.Input((4,))
    h = L.Dense(8, kernel_initializer="ones")(inp)
    h = L.Dropout(0.5, seed=None if seed == "none" else int(seed))(h)
    out = L.Dense(1, kernel_initializer="ones")(h)
    m = base(inp, out)
    m.compile(optimizer=lib.optimizers.SGD(0.01), loss="mse")
    cbs = []
    if variant.startswith("B"):
        fwd = tf.function(lambda: m(x, training=True))
        rng = tf.function(lambda: tf.random.uniform([3]))
        act = {"Bfwd": fwd, "Brng": rng, "Beag": lambda: tf.random.uniform([3])}[variant]
        cbs = [lib.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs=None: act())]
    m.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=cbs)
    w = np.concatenate([v.numpy().ravel() for v in m.trainable_weights])
    print(f"{w.sum():.7f} {w[:3]}")


if len(sys.argv) > 1:
    child(*sys.argv[1:])
    sys.exit(0)
for lib in ["tf_keras", "keras3"]:
    for seed in ["none", "1"]:
        outs = {}
        for var in ["A", "A2", "Bfwd", "Brng", "Beag", "Ctr", "Crng", "Cfwd"]:
            r = subprocess.run([sys.executable, __file__, lib, seed, var], capture_output=True, text=True)
            outs[var] = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "ERR " + r.stderr[-300:]
        a = outs["A"]
        print(f"{lib:8s} Dropout(seed={seed}): A={a}")
        for k, v in outs.items():
            if k != "A":
                print(f"      {k:5s} {'SAME as A' if v == a else 'DIFFERENT: ' + v}")
