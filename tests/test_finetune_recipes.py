"""The fine-tuning recipe lab (experiments/finetune_recipes.py) on a tiny synthetic set (slow: TensorFlow)."""
import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("tensorflow", reason="the recipe lab needs the train extra (TensorFlow)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from fracture_edge.experiments.finetune_recipes import main
    from fracture_edge.train.synthetic import SyntheticSpec, write_synthetic_dataset

    root = tmp_path_factory.mktemp("recipes")
    data = write_synthetic_dataset(root / "data", SyntheticSpec(train=16, val=12, test=8, image_size=40))
    assert main(["cache", "--data", str(data), "--cache", str(root / "cache"), "--weights", "none",
                 "--size", "32", "--views", "2"]) == 0
    return root / "cache"


def test_cache_holds_each_view_and_validation_under_every_shift(cache):
    from fracture_edge.edge_runtime.shifts import shift_names

    views = [np.load(cache / f"train_v{v}.npy") for v in (0, 1)]
    assert views[0].shape == views[1].shape and views[0].dtype == np.float16
    assert len(views[0]) == len(np.load(cache / "train_y.npy")) == 16
    assert not np.array_equal(views[0], views[1])          # view 1 is augmented
    clean = np.load(cache / "val_clean.npy")
    for name in shift_names():
        assert np.load(cache / f"val_{name}.npy").shape == clean.shape, name
    assert not np.array_equal(np.load(cache / "val_invert.npy"), clean)
    assert not list(cache.glob("test*")) and not list(cache.glob("*.tmp*"))   # the test split is never read


def test_run_scores_a_recipe_on_validation_and_tabulates_it(cache):
    from fracture_edge.experiments.finetune_recipes import main
    from fracture_edge.edge_runtime.shifts import STABILITY_PROBES, shift_names

    assert main(["run", "--cache", str(cache), "--tag", "two-views", "--views", "0,1", "--head-epochs", "1",
                 "--finetune-epochs", "1", "--batch-size", "8"]) == 0
    record = json.loads((cache / "recipes.jsonl").read_text().splitlines()[-1])
    assert record["tag"] == "two-views" and record["views"] == [0, 1]
    assert set(record["aucs"]) == {"clean", *shift_names()}
    acquisition = {n: a for n, a in record["aucs"].items() if n not in ("clean", *STABILITY_PROBES)}
    assert record["worst"] == min(acquisition.values()) == acquisition[record["worst_shift"]]
    assert record["mean"] == pytest.approx(np.mean(list(acquisition.values())))
    assert "| two-views | 0,1 |" in (cache / "recipes.md").read_text()


def test_run_names_a_view_that_was_not_cached(cache, caplog):
    from fracture_edge.experiments.finetune_recipes import main

    assert main(["run", "--cache", str(cache), "--tag", "x", "--views", "0,5"]) == 2
    assert "no cached view(s) [5]" in caplog.text
