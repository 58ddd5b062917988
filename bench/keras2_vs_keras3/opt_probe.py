"""Optimizer probe: default hyper-params and 3 update steps, tf_keras vs keras3,
same variable init and same gradient sequence.  Also checks the Adam / SGD-momentum
formulas against a numpy re-implementation.
Run: .venv/bin/python bench/keras2_vs_keras3/opt_probe.py"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL is set)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

rng = np.random.default_rng(0)
w0 = rng.normal(size=(5,)).astype("float32")
grads = [rng.normal(size=(5,)).astype("float32") for _ in range(3)]
names = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Ftrl", "Lion"]
extra = {"SGD": [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True)],
         "RMSprop": [dict(), dict(centered=True, momentum=0.5)], "Adam": [dict(), dict(amsgrad=True)]}
SKIP = {"name", "jit_compile", "is_legacy_optimizer", "loss_scale_factor", "gradient_accumulation_steps"}


def run(lib, nm, kw):
    opt = getattr(lib.optimizers, nm)(**kw)
    v = tf.Variable(w0) if lib is tf_keras else keras.Variable(w0)
    for g in grads:
        opt.apply_gradients([(tf.constant(g), v)])
    return opt, np.array(v.numpy())


for nm in names:
    for kw in extra.get(nm, [dict()]):
        o2, a = run(tf_keras, nm, kw)
        o3, b = run(keras, nm, kw)
        c2 = {k: v for k, v in o2.get_config().items() if k not in SKIP}
        c3 = {k: v for k, v in o3.get_config().items() if k not in SKIP}
        cd = {k: (c2.get(k, "<absent>"), c3.get(k, "<absent>")) for k in set(c2) | set(c3)
              if c2.get(k, "<absent>") != c3.get(k, "<absent>")}
        print(f"{nm:8s} {str(kw):38s} max|w_tfk - w_k3| after 3 steps = {np.abs(a-b).max():.3e}"
              f"   config diffs (tf_keras, keras3): {cd}")


# formula checks (numpy float64 reference vs each library)
def adam_ref(w, gs, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    w = w.astype(np.float64)
    m = 0 * w
    v = 0 * w
    for t, g in enumerate(gs, 1):
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        w = w - m * alpha / (np.sqrt(v) + eps)           # plain epsilon (not eps*sqrt(1-b2^t))
    return w


def sgdm_ref(w, gs, lr=0.01, mom=0.9):
    w = w.astype(np.float64)
    vel = 0 * w
    for g in gs:
        vel = mom * vel - lr * g
        w = w + vel
    return w


for lib in (tf_keras, keras):
    _, a = run(lib, "Adam", {})
    _, s = run(lib, "SGD", dict(momentum=0.9))
    print(f"{lib.__name__:8s} Adam vs formula(plain eps) maxerr={np.abs(a-adam_ref(w0, grads)).max():.2e};"
          f" SGD(m=0.9) vs v=m*v-lr*g; w+=v maxerr={np.abs(s-sgdm_ref(w0, grads)).max():.2e}")
