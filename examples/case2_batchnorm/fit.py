"""Case 2 reference side: model.fit, which calls the model with training=True."""

import xentdbg

from common import build


def setup(data):
    model, optimizer = build()
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    return xentdbg.KerasFit(model, shuffle=False)
