"""The benchmark's results file says when each entry was measured: a full run keeps the
entries it does not measure (``--only baseline``, ``--only sizes``) with their dates, and
the printed table dates every row by the run that last measured its entry."""

from __future__ import annotations

from conftest import bench_module


def _bench():
    return bench_module("bench")


def test_each_entry_is_dated_by_the_run_that_last_measured_it():
    bench = _bench()
    r = {"date": "full", "long_date": "only long", "baseline_date": "only baseline"}
    assert bench.measured_on(r, "long") == bench.measured_on(r, "long_clean") == "only long"
    # --only long re-measures those two: the fingerprint entries and case 1 stay the full run's
    assert bench.measured_on(r, "long_clean_fingerprint") == bench.measured_on(r, "case1") == "full"
    assert bench.measured_on(r, "oracle") == "full"  # no --only crossfeed run since
    assert bench.measured_on(r, "baseline") == "only baseline"
    assert bench.measured_on(r, "sizes") == ""  # never measured: no date, not the full run's


def test_a_full_run_keeps_only_what_it_does_not_measure():
    bench = _bench()
    existing = {"date": "old", "case1": {"ratio": 1.0}, "long": {}, "long_date": "d1", "crossfeed_date": "d2",
                "baseline": {"case1": {}}, "baseline_date": "d3", "sizes": {"mlp": {}}, "sizes_date": "d4"}
    assert bench.kept_by_full_run(existing) == {"baseline": {"case1": {}}, "baseline_date": "d3",
                                                "sizes": {"mlp": {}}, "sizes_date": "d4"}
