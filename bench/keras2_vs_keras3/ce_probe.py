"""Cross-entropy-on-probabilities probe: when does each library use the logits path
vs clip(p, 1e-7, 1-1e-7)?  Logits are chosen so p[true] ~ 1e-13 < 1e-7:
  logits path   -> loss = 30.0 ;   clipped path -> loss = -log(1e-7) = 16.118
Run: .venv/bin/python bench/keras2_vs_keras3/ce_probe.py"""
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")
import keras  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL / warning filter are set)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from tf_keras import backend as KB  # noqa: E402

x = np.array([[1.0]], "float32")
# Dense(3, use_bias=False) with kernel [[0, 30, 0]] -> logits [0,30,0]; true class 0
K = np.array([[0.0, 30.0, 0.0]], "float32")
y_cat = np.array([[1.0, 0.0, 0.0]], "float32")
y_sp = np.array([0], "int64")
Kb = np.array([[-30.0]], "float32")
y_b = np.array([[1.0]], "float32")
print("reference: logits-path CCE =", float(tf.nn.softmax_cross_entropy_with_logits(y_cat, [[0., 30., 0.]])[0]),
      " clipped-path =", -np.log(np.float32(1e-7)))


def build(lib, act, kind):
    L = lib.layers
    inp = L.Input((1,))
    if kind == "bce":
        h = L.Dense(1, use_bias=False, kernel_initializer=lambda *a, **k: tf.constant(Kb))(inp)
    else:
        h = L.Dense(3, use_bias=False, kernel_initializer=lambda *a, **k: tf.constant(K))(inp)
    fn = {"bce": "sigmoid", "cce": "softmax", "scce": "softmax"}[kind]
    if act == "string":
        out = L.Activation(fn)(h)
    elif act == "tf.nn":
        out = L.Activation(getattr(tf.nn, fn))(h)
    elif act == "Softmax-layer":
        out = L.Softmax()(h) if kind != "bce" else L.Activation("sigmoid")(h)
    return lib.Model(inp, out)


def losses(lib, kind):
    return {"cce": lib.losses.CategoricalCrossentropy(), "scce": lib.losses.SparseCategoricalCrossentropy(),
            "bce": lib.losses.BinaryCrossentropy()}[kind]


for name, lib in [("tf_keras", tf_keras), ("keras3", keras)]:
    for kind in ["cce", "scce", "bce"]:
        y = {"cce": y_cat, "scce": y_sp, "bce": y_b}[kind]
        for act in ["string", "tf.nn", "Softmax-layer"]:
            res = {}
            m = build(lib, act, kind)
            lf = losses(lib, kind)
            res["eager-call"] = float(lf(y, m(x)))
            res["tf.function-call"] = float(tf.function(lambda lf=lf, y=y, m=m: lf(y, m(x)))())
            for eager in [True, False]:
                m = build(lib, act, kind)
                m.compile(optimizer=lib.optimizers.SGD(0.0), loss=losses(lib, kind), run_eagerly=eager)
                h = m.fit(x, y, epochs=1, verbose=0, shuffle=False)
                res["fit-eager" if eager else "fit-graph"] = h.history["loss"][0]
            print(f"{name:8s} {kind:4s} act={act:13s} " + "  ".join(f"{k}={v:7.4f}" for k, v in res.items()))

# Non-saturated BCE on probabilities (logits path NOT taken: eager constant input):
# tf_keras: -[t*log(p+eps) + (1-t)*log(1-p+eps)] after clip;  keras3: -[t*log(p) + (1-t)*log(1-p)] after clip
for p_ in [0.3, 1e-6, 1e-7]:
    p = tf.constant([[p_]], tf.float32)
    t = tf.constant([[1.0]])
    with tf.GradientTape(persistent=True) as g:
        g.watch(p)
        a = KB.binary_crossentropy(t, p)
        b = keras.ops.binary_crossentropy(t, p)
    eps = 1e-7
    pc = max(min(p_, 1 - eps), eps)
    print(f"BCE p={p_:g} t=1: tf_keras={float(a[0,0]):.7f}"
          f" (formula -log(p+eps)={-np.log(np.float32(pc)+np.float32(eps)):.7f}) "
          f"dL/dp={float(g.gradient(a, p)[0,0]):.6g} | keras3={float(b[0,0]):.7f}"
          f" (formula -log(p)={-np.log(np.float32(pc)):.7f}) dL/dp={float(g.gradient(b, p)[0,0]):.6g}")
