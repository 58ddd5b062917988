"""Whole-model init under set_random_seed(0): Dense(4)-Dropout-Dense(2) and Dense(4)-Dense(2), tf_keras vs keras3.
Run: .venv/bin/python bench/keras2_vs_keras3/init_model_probe.py"""
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if len(sys.argv) > 1:
    lib = __import__("tf_keras" if sys.argv[1] == "tf_keras" else "keras")
    lib.utils.set_random_seed(0)
    L = lib.layers
    if sys.argv[2] == "dropout":
        m = lib.Sequential([L.Input((3,)), L.Dense(4), L.Dropout(0.5), L.Dense(2)])
    elif sys.argv[2] == "dropout_constructed_first":   # same architecture, Dropout object created first
        d = L.Dropout(0.5)
        m = lib.Sequential([L.Input((3,)), L.Dense(4), d, L.Dense(2)])
    else:
        m = lib.Sequential([L.Input((3,)), L.Dense(4), L.Dense(2)])
    print(json.dumps([round(float(v.numpy().ravel()[0]), 6) for v in m.trainable_weights
                      if "kernel" in (getattr(v, "path", None) or v.name)]))
    sys.exit(0)
for arch in ["plain", "dropout", "dropout_constructed_first"]:
    r = {lib: subprocess.run([sys.executable, __file__, lib, arch], capture_output=True,
                             text=True).stdout.strip().splitlines()[-1]
         for lib in ["tf_keras", "keras3"]}
    print(f"{arch:26s} first element of each kernel: tf_keras={r['tf_keras']} keras3={r['keras3']}"
          f" equal={r['tf_keras']==r['keras3']}")
