"""``--fingerprint`` and the full replay give the same exit code and the same first
divergence on long runs too: drift alone (exit 0 both ways, pass 2 runs on past pass 1's
flag), and a bug introduced late (step 20). The pairs are ``bench/fingerprint_agreement.py``'s
``LONG_PAIRS``; that script also runs every example pair both ways."""

from __future__ import annotations

import pytest

from conftest import LONG_PAIRS, ROOT, run_compare

pytestmark = pytest.mark.slow

EXPECTED = {"long jax drift pair, 200 steps": (0, None),
            "long jax schedule change at step 20": (1, (20, "updates"))}
# "long case1 logits-jax vs fit, 500 steps" (TensorFlow, ~1 minute both ways) runs in the
# bench script only: the suite's time goes to the two JAX pairs, which exercise the same
# pass-2-runs-on logic.


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_both_passes_agree_on_long_pairs(session_tmp, name):
    a, b, args = LONG_PAIRS[name]
    runs = [run_compare(ROOT / a, ROOT / b, *args, *mode, tmp_path=session_tmp) for mode in ((), ("--fingerprint",))]
    firsts = []
    for run in runs:
        first = run.report["first_divergence"]
        firsts.append(None if first is None else (first["step"], first["phase"], first["name_a"], first["name_b"]))
    assert runs[0].code == runs[1].code, (runs[0].output[-2000:], runs[1].output[-2000:])
    assert firsts[0] == firsts[1]
    code, where = EXPECTED[name]
    assert runs[0].code == code, runs[0].output[-3000:]
    assert (firsts[0][:2] if firsts[0] else None) == where
