"""The one peak-RSS meter and the one version record (edge_runtime/environment.py): a peak so far never goes
down within a process; the record keeps its keys in order."""
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


def test_the_version_record_keeps_the_order_given_and_names_a_missing_module_none():
    """train's bundle `versions` and export's `environment` are this one record (no TensorFlow needed here)."""
    import numpy as np

    from fracture_edge.edge_runtime import __version__

    record = environment.module_versions(("numpy", "fracture_edge_no_such_module"))
    assert list(record) == ["fracture_edge", "numpy", "fracture_edge_no_such_module", "python"]
    assert (record["fracture_edge"], record["numpy"], record["fracture_edge_no_such_module"]) == \
        (__version__, np.__version__, None)
