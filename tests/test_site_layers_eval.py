"""The multi-stage site-check lead (experiments/site_layers_eval.py) on constructed features: no model."""
from __future__ import annotations

import numpy as np

from fracture_edge.experiments.site_layers_eval import ALL, JointSite, slices, source_rows
from test_site_check_eval import constructed

COLUMNS = {"early": slice(0, 20), "late": slice(20, 40)}   # both sources move axes 0 and 1: the early stage


def test_stage_columns_follow_the_concatenation_order():
    assert slices({"a": 3, "b": 5, "c": 1}) == {"a": slice(0, 3), "b": slice(3, 8), "c": slice(8, 9)}


def test_a_shift_seen_by_one_stage_is_found_by_that_stage_and_by_all_stages_together():
    samples, features = constructed(far=8.0)
    rows, sites = source_rows(samples, features, COLUMNS, seed=0)
    for name, row in rows.items():
        stages = row["stages"]
        assert stages["early"]["auroc"] > 0.99 and stages[ALL]["auroc"] > 0.97, name
        assert 0.3 < stages["late"]["auroc"] < 0.7, name         # the late stage never sees the shift
        assert stages[ALL]["home_flagged"] < 0.12 and stages[ALL]["source_folders_different"] > 0.95, name
        assert set(row["components"]) == set(COLUMNS)


def test_the_joint_distance_is_the_sum_of_the_stages_negative_log_likelihoods():
    samples, features = constructed(far=0.0)
    split = np.array([s.split for s in samples])
    site = JointSite(features[split == "train"], features[split == "val"], COLUMNS, seed=0)
    x = features[split == "test"]
    assert np.allclose(site.nll(x, (ALL,)), site.nll(x, ("early",)) + site.nll(x, ("late",)))
    _, flagged = site.flags(x, ALL)
    assert flagged.mean() < 0.15                                   # same distribution: about 5 % flagged


def test_copies_reach_every_stage_fit_and_leave_the_source_found():
    samples, features = constructed(far=8.0)
    copies = features + np.random.default_rng(1).normal(0, 0.05, features.shape)
    rows, sites = source_rows(samples, features, COLUMNS, seed=0, copies=copies)
    plain_rows, plain_sites = source_rows(samples, features, COLUMNS, seed=0)
    for name, row in rows.items():
        assert row["stages"][ALL]["auroc"] > 0.97, name
        for stage in COLUMNS:
            assert sites[name].choices[stage].model.fitted_on == 2 * plain_sites[name].choices[stage].model.fitted_on
