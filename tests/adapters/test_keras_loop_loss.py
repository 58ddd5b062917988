"""What a KerasLoop train_step may return: the loss, (loss, extras), or {"loss": ...}."""

from __future__ import annotations

import numpy as np
import pytest

from xentdbg.adapters.keras_loop import _loss_of
from xentdbg.errors import UsageError


@pytest.mark.parametrize("out", [np.float32(2.5), np.array([[2.5]]), (np.float32(2.5), np.zeros((4, 10))),
                                 [2.5, "metrics"], {"loss": 2.5, "accuracy": 0.1}])
def test_accepted_returns(out):
    assert float(_loss_of(out)) == 2.5


@pytest.mark.parametrize("out, words", [(None, "returned None"), ((), "a tuple of 0"),
                                        ({"acc": 1.0}, "a dict with keys ['acc']"),
                                        (np.zeros(3), "ndarray of shape (3,)"), (("text",), "starting with")])
def test_anything_else_is_a_usage_error_naming_what_came_back(out, words):
    with pytest.raises(UsageError) as info:
        _loss_of(out)
    assert words in info.value.message and "first element is the loss" in (info.value.hint or "")
