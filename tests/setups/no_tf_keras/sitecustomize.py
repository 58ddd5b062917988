"""Put this folder on PYTHONPATH to run Python as if tf_keras were not installed."""

import sys


class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "tf_keras" or name.startswith("tf_keras."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Hide())
