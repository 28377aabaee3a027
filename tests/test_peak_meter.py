"""The one peak-RSS meter (edge_runtime/environment.py): a peak so far never goes down within a process."""
from __future__ import annotations

from fracture_edge.edge_runtime import environment


def test_the_peak_never_reads_lower_than_before_even_when_the_kernel_counter_dips(monkeypatch):
    readings = iter([710.0, 709.9, 712.5, 712.4])          # VmHWM as read on Linux: lazily synced, may dip
    monkeypatch.setattr(environment, "_read_peak_rss_mb", lambda: next(readings))
    monkeypatch.setattr(environment, "_highest_peak", (0, 0.0))
    assert [environment.peak_rss_mb() for _ in range(4)] == [710.0, 710.0, 712.5, 712.5]


def test_a_forked_child_does_not_inherit_its_parents_peak(monkeypatch):
    monkeypatch.setattr(environment, "_read_peak_rss_mb", lambda: 50.0)
    monkeypatch.setattr(environment, "_highest_peak", (-1, 900.0))    # another process's record
    assert environment.peak_rss_mb() == 50.0
