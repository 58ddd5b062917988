"""Which library does tf.keras resolve to, and compile()'s jit_compile resolution on this machine.
Run: TF_USE_LEGACY_KERAS=1 python flag_probe.py ; python flag_probe.py"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL is set)

k = tf.keras
m = k.Sequential([k.layers.Input((2,)), k.layers.Dense(1)])
m.compile("adam", "mse")
m.fit(tf.ones((4, 2)), tf.ones((4, 1)), verbose=0)
print(f"TF_USE_LEGACY_KERAS={os.environ.get('TF_USE_LEGACY_KERAS')} tf.keras -> {type(m).__module__.split('.')[0]}"
      f" | GPUs={len(tf.config.list_physical_devices('GPU'))} | model.jit_compile={m.jit_compile!r}"
      f" | optimizer.jit_compile={getattr(m.optimizer, 'jit_compile', None)!r}")
