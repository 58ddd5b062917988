"""tf_keras capture-hook probe + variable-name comparison.
  python hooks_probe.py names        -> tf_keras v.name vs keras3 v.path/v.name, expects_training_arg
  python hooks_probe.py run plain    -> fit, print weight checksum
  python hooks_probe.py run hooked   -> same fit with outside hooks: layer.call instance replacement,
        optimizer.apply_gradients instance replacement, on_train_batch_begin/end variable snapshots,
        tf.data tap on the adapter's dataset.  Prints checksum + what was captured.
  python hooks_probe.py              -> driver (runs all, compares checksums)"""
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make(lib):
    L = lib.layers
    return lib.Sequential([L.Input((6, 6, 1)), L.Conv2D(2, 3), L.BatchNormalization(), L.Flatten(),
                           L.Dense(4, activation="relu"), L.Dropout(0.5), L.Dense(1)])


def names():
    import keras
    import tf_keras
    a, b = make(tf_keras), make(keras)
    print("tf_keras v.name                          | keras3 v.path                         | keras3 v.name")
    import itertools
    for va, vb in itertools.zip_longest(a.variables, b.variables):
        print(f"{va.name if va is not None else '-':40s} | {vb.path if vb is not None else '-':37s}"
              f" | {vb.name if vb is not None else '-'}")
    print("keras3 model.weights (excludes seed state?):", [v.path for v in b.weights][-3:])
    print("expects_training_arg (tf_keras _call_spec):",
          {lyr.name: lyr._call_spec.expects_training_arg for lyr in a._flatten_layers(include_self=False)})
    print("tf_keras model.name:", a.name, "  keras3 model.name:", b.name)
    a.compile(optimizer=tf_keras.optimizers.Adam(), loss="mse")
    a.optimizer.build(a.trainable_variables)
    print("tf_keras type(optimizer.variables):", type(a.optimizer.variables).__name__,
          "callable:", callable(a.optimizer.variables), "first names:", [v.name for v in a.optimizer.variables][:3])


def run(mode):
    import numpy as np
    import tensorflow as tf
    import tf_keras
    tf_keras.utils.set_random_seed(0)
    rs = np.random.default_rng(0)
    x = rs.normal(size=(10, 6, 6, 1)).astype("float32")
    y = rs.normal(size=(10, 1)).astype("float32")
    m = make(tf_keras)
    m.compile(optimizer=tf_keras.optimizers.Adam(0.01), loss="mse")
    cap = {"training": [], "apply_gradients_traces": 0, "batches": [], "pre": [], "post": []}
    cbs = []
    if mode == "hooked":
        # (b) training flags: replace call on the instance (Python only, adds no ops)
        for layer in m._flatten_layers(include_self=False):
            orig = layer.call

            def wrapped(*args, _o=orig, _n=layer.name, **kw):
                cap["training"].append((_n, repr(kw.get("training", "<absent>"))))
                return _o(*args, **kw)
            layer.call = wrapped
        # optimizer.apply_gradients (called by optimizer.minimize inside train_step)
        opt = m.optimizer
        oag = opt.apply_gradients

        def ag(grads_and_vars, *a, **k):
            cap["apply_gradients_traces"] += 1
            return oag(grads_and_vars, *a, **k)
        opt.apply_gradients = ag

        # (c) pre-step variable values
        def snap():
            return [v.numpy().copy() for v in m.variables]
        cbs = [tf_keras.callbacks.LambdaCallback(
            on_train_batch_begin=lambda b, logs=None: cap["pre"].append(snap()),
            on_train_batch_end=lambda b, logs=None: cap["post"].append(snap()))]
        # (a) the batch actually used: tap appended to the adapter's dataset (input pipeline only)
        from tf_keras.src.engine import data_adapter as da
        og = da.TensorLikeDataAdapter.get_dataset

        def tap_np(xb):
            cap["batches"].append(xb.numpy()[:, 0, 0, 0].round(4).tolist())
            return xb

        def tap(xb, *rest):
            t = tf.py_function(tap_np, [xb], xb.dtype)
            t.set_shape(xb.shape)
            return (t,) + rest
        da.TensorLikeDataAdapter.get_dataset = lambda self: og(self).map(tap)
    m.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=cbs)
    w = np.concatenate([v.numpy().ravel() for v in m.variables])
    out = {"checksum": f"{w.sum():.7f}"}
    if mode == "hooked":
        pre, post = cap["pre"], cap["post"]
        out["training_flags_at_trace"] = sorted(set(cap["training"]))
        out["apply_gradients_python_calls"] = cap["apply_gradients_traces"]
        out["n_batches_tapped"] = len(cap["batches"])
        out["steps_snapshotted"] = len(pre)
        out["pre[k+1]==post[k] all steps"] = all(all(np.array_equal(a, b) for a, b in zip(pre[k + 1], post[k]))
                                               for k in range(len(pre) - 1))
        out["pre[k]!=post[k] (step changes vars)"] = all(any(not np.array_equal(a, b) for a, b in zip(pre[k], post[k]))
                                                       for k in range(len(pre)))
        x0 = x[:, 0, 0, 0].round(4).tolist()
        out["tapped batch sample indices"] = [[x0.index(v) for v in bt] for bt in cap["batches"]]
    print(json.dumps(out))


if len(sys.argv) > 1:
    if sys.argv[1] == "names":
        names()
    else:
        run(sys.argv[2])
    sys.exit(0)
py = sys.executable
print(subprocess.run([py, __file__, "names"], capture_output=True, text=True).stdout)
r = {m: json.loads(subprocess.run([py, __file__, "run", m], capture_output=True,
                                  text=True).stdout.strip().splitlines()[-1])
     for m in ["plain", "hooked"]}
print("plain :", r["plain"])
print("hooked:", json.dumps(r["hooked"], indent=1))
print("hooks change training:", r["plain"]["checksum"] != r["hooked"]["checksum"])
