"""Default initializer probe: Dense(3->4) glorot_uniform + zeros bias under set_random_seed(0);
checks bound sqrt(6/(fan_in+fan_out)), cross-process determinism, and tf_keras vs keras3 values.
Run: .venv/bin/python bench/keras2_vs_keras3/init_probe.py"""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if len(sys.argv) > 1:
    import numpy as np
    lib = __import__("tf_keras" if sys.argv[1] == "tf_keras" else "keras")
    if sys.argv[2] == "seed":
        lib.utils.set_random_seed(0)
    d = lib.layers.Dense(4)
    d.build((None, 3))
    k = d.kernel.numpy()
    print(type(d.kernel_initializer).__name__, np.abs(k).max() <= np.sqrt(6 / 7), k.ravel()[:4].round(6).tolist(),
          d.bias.numpy().tolist())
    sys.exit(0)
for lib in ["tf_keras", "keras3"]:
    for s in ["seed", "noseed"]:
        outs = [subprocess.run([sys.executable, __file__, lib, s], capture_output=True,
                               text=True).stdout.strip().splitlines()[-1]
                for _ in range(2)]
        print(f"{lib:8s} {s:6s} run1: {outs[0]}\n{'':15s} run2 identical: {outs[0] == outs[1]}")
