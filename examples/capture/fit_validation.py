"""The same ``model.fit`` with ``validation_data``: after every epoch Keras runs the model in
inference mode (``training=False``) on the validation set. Training is unchanged, so this
pair must agree; the validation calls must not leak into the recorded training flags."""

from common import fit


def setup(data):
    return fit(validation_data=(data.x[:100], data.y[:100]))
