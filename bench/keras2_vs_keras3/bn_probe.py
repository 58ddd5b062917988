"""BN moving-statistics probe: tf_keras (Keras 2) vs keras 3, TF backend.
Run: .venv/bin/python bench/keras2_vs_keras3/bn_probe.py
One training-mode call on a batch; compare moving stats to formulas."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL is set)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

rng = np.random.default_rng(0)
m = 0.99
for shape in [(4, 2, 2, 3), (4, 3)]:
    x = rng.normal(2.0, 3.0, size=shape).astype("float32")
    ax = tuple(range(len(shape) - 1))
    n = int(np.prod([shape[a] for a in ax]))
    mu = x.astype(np.float64).mean(ax)
    vb = x.astype(np.float64).var(ax)            # biased
    vu = vb * n / (n - 1)                        # unbiased (Bessel)
    print(f"== input shape {shape}, n per channel={n}")
    for name, lib in [("tf_keras", tf_keras), ("keras3", keras)]:
        for mode in ["eager", "tf.function"]:
            bn = lib.layers.BatchNormalization()
            bn.build(shape)
            if mode == "eager":
                y = bn(x, training=True)
            else:
                y = tf.function(lambda t, bn=bn: bn(t, training=True))(x)
            mm = bn.moving_mean.numpy()
            mv = bn.moving_variance.numpy()
            fused = getattr(bn, "fused", "n/a")
            exp_mm = m * 0 + (1 - m) * mu
            exp_b = m * 1 + (1 - m) * vb
            exp_u = m * 1 + (1 - m) * vu
            y_b = (x - mu) / np.sqrt(vb + 1e-3)
            y_u = (x - mu) / np.sqrt(vu + 1e-3)
            print(f"{name:8s} {mode:11s} fused={fused} eps={bn.epsilon} mom={bn.momentum}"
                  f" | mm-formula maxerr={np.abs(mm-exp_mm).max():.2e}"
                  f" | mv vs biased {np.abs(mv-exp_b).max():.2e} vs unbiased {np.abs(mv-exp_u).max():.2e}"
                  f" | y vs biased-norm {np.abs(y.numpy()-y_b).max():.2e}"
                  f" vs unbiased-norm {np.abs(y.numpy()-y_u).max():.2e}")
            print(f"   moving_variance={mv}")
    print(f"   expected biased  ={exp_b.astype('float32')}\n   expected unbiased={exp_u.astype('float32')}")
