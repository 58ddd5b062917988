"""Reference side with an L2 penalty: ``Dense(64, kernel_regularizer=L2(1e-2))``, ``model.fit``.

``fit`` adds ``sum(model.losses)`` (here ``1e-2 * sum(W**2)`` of the hidden kernel) to
the loss it differentiates and reports. Side A of cause 8 (loop_l2_forgot.py,
loop_l2_wrong_target.py) and of the clean pair with loop_l2.py."""

from common import L2, fit


def setup(data):
    return fit(l2=L2, shuffle=False)
