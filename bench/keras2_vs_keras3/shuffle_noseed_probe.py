"""Keras 3 / tf_keras: is the per-epoch permutation repeated when NO global seed is set? Run twice.
Run: .venv/bin/python bench/keras2_vs_keras3/shuffle_noseed_probe.py [tf_keras|keras3] [seed|noseed]"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL is set)
import tensorflow as tf  # noqa: E402

libname = sys.argv[1] if len(sys.argv) > 1 else "keras3"
lib = __import__("tf_keras" if libname == "tf_keras" else "keras")
if len(sys.argv) > 2 and sys.argv[2] == "seed":
    lib.utils.set_random_seed(0)
seen = []


def tap_np(xb):
    seen.append([int(v) for v in xb.numpy()[:, 0]])
    return xb


def tap(xb, *rest):
    xt = tf.py_function(tap_np, [xb], xb.dtype)
    xt.set_shape(xb.shape)
    return (xt,) + rest


if libname == "tf_keras":
    from tf_keras.src.engine import data_adapter as da
    o = da.TensorLikeDataAdapter.get_dataset
    da.TensorLikeDataAdapter.get_dataset = lambda s: o(s).map(tap)
else:
    from keras.src.trainers.data_adapters import array_data_adapter as ada
    o = ada.ArrayDataAdapter.get_tf_dataset
    ada.ArrayDataAdapter.get_tf_dataset = lambda s: o(s).map(tap)
x = np.arange(10, dtype="float32")[:, None]
y = np.ones((10, 1), "float32")
m = lib.Sequential([lib.layers.Input((1,)), lib.layers.Dense(1)])
m.compile("sgd", "mse")
m.fit(x, y, batch_size=10, epochs=3, verbose=0)
print(libname, sys.argv[2:] , "epoch permutations:", seen)
