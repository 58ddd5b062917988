"""fit() probe: (1) loss reduction / regularization / partial last batch / sample_weight
reproduced from the formula  loss_b = sum_i(sw_i * (x_i.w + b - y_i)^2) / n_b + 0.1*sum(w^2)
(2) shuffle order per epoch captured by a tf.data tap (py_function map appended to the
    adapter's dataset; the train step is untouched) and check that the tap changes nothing.
Run: .venv/bin/python bench/keras2_vs_keras3/fit_probe.py"""
import inspect
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def numpy_ref(x, y, sw, bs, lr=0.1, l2=0.1):
    import numpy as np
    w = np.ones((x.shape[1],))
    b = 0.0
    for s in range(0, len(x), bs):
        xb, yb, swb = x[s:s+bs], y[s:s+bs, 0], sw[s:s+bs]
        r = xb @ w + b - yb
        n = len(xb)
        gw = 2 * (swb * r) @ xb / n + 2 * l2 * w
        gb = 2 * (swb * r).sum() / n
        w, b = w - lr * gw, b - lr * gb
    return np.concatenate([w, [b]])


def child(libname, mode):
    import numpy as np
    import tensorflow as tf
    lib = __import__("tf_keras" if libname == "tf_keras" else "keras")
    lib.utils.set_random_seed(0)
    if mode == "reduction":
        rs = np.random.default_rng(1)
        x = rs.normal(size=(10, 3)).astype("float32")
        y = rs.normal(size=(10, 1)).astype("float32")
        out = {}
        for use_sw in [False, True]:
            sw = rs.uniform(0.5, 2, size=10).astype("float32") if use_sw else np.ones(10, "float32")
            m = lib.Sequential([lib.layers.Input((3,)), lib.layers.Dense(1, kernel_initializer="ones",
                                kernel_regularizer=lib.regularizers.L2(0.1))])
            m.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
            m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, sample_weight=sw if use_sw else None)
            got = np.concatenate([m.layers[-1].kernel.numpy().ravel(), m.layers[-1].bias.numpy()])
            ref = numpy_ref(x.astype("float64"), y.astype("float64"), sw.astype("float64"), 4)
            out[f"sample_weight={use_sw}"] = float(np.abs(got - ref).max())
        print(json.dumps(out))
        return
    # shuffle mode
    seen = []

    def tap_np(xb):
        seen.append([int(v) for v in xb.numpy()[:, 0]])
        return xb

    def tap(xb, *rest):
        xt = tf.py_function(tap_np, [xb], xb.dtype)
        xt.set_shape(xb.shape)
        return (xt,) + rest
    if mode == "shuffle_tap":
        if libname == "tf_keras":
            from tf_keras.src.engine import data_adapter as da
            orig = da.TensorLikeDataAdapter.get_dataset
            da.TensorLikeDataAdapter.get_dataset = lambda self: orig(self).map(tap)
        else:
            from keras.src.trainers.data_adapters import array_data_adapter as ada
            orig = ada.ArrayDataAdapter.get_tf_dataset
            ada.ArrayDataAdapter.get_tf_dataset = lambda self: orig(self).map(tap)
    x = np.arange(10, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    y = np.ones((10, 1), "float32")
    m = lib.Sequential([lib.layers.Input((3,)), lib.layers.Dense(4, activation="relu"), lib.layers.Dropout(0.3),
                        lib.layers.Dense(1)])
    m.compile(optimizer=lib.optimizers.SGD(0.001), loss="mse")
    m.fit(x, y, batch_size=4, epochs=3, verbose=0)   # default shuffle
    w = np.concatenate([v.numpy().ravel() for v in m.trainable_weights])
    print(json.dumps({"batches": seen, "wsum": f"{w.sum():.7f}"}))


if len(sys.argv) > 1:
    child(*sys.argv[1:])
    sys.exit(0)
import keras  # noqa: E402  (driver only: a child process must import just the one Keras it measures)
import tf_keras  # noqa: E402

fit_tfk = inspect.signature(tf_keras.Model.fit).parameters
fit_k3 = inspect.signature(keras.Model.fit).parameters
print(f"fit defaults: tf_keras shuffle={fit_tfk['shuffle'].default!r} batch_size={fit_tfk['batch_size'].default!r}"
      f" | keras3 shuffle={fit_k3['shuffle'].default!r} batch_size={fit_k3['batch_size'].default!r}")
for lib in ["tf_keras", "keras3"]:
    r = {mode: subprocess.run([sys.executable, __file__, lib, mode], capture_output=True,
                              text=True).stdout.strip().splitlines()[-1]
         for mode in ["reduction", "shuffle", "shuffle_tap"]}
    print(f"{lib}: max|w - numpy formula| (batch 4,4,2; mse; +0.1*sum(w^2)): {r['reduction']}")
    t = json.loads(r["shuffle_tap"])
    p = json.loads(r["shuffle"])
    print(f"{lib}: batches seen per step (3 epochs, bs=4, N=10): {t['batches']}")
    print(f"{lib}: final wsum without tap {p['wsum']}  with tap {t['wsum']}  -> "
          f"{'tap changes nothing' if p['wsum']==t['wsum'] else 'TAP CHANGED TRAINING'}")
