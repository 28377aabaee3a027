"""Dataset reading: folder layout with class aliases, split CSV, clear errors."""
import pytest
from PIL import Image

from fracture_edge.edge_runtime import dataset as D


def touch_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 100).save(path)


@pytest.mark.parametrize("folder,label", [("fractured", "fractured"), ("not fractured", "not_fractured"),
                                          ("Normal", "not_fractured"), ("not_fractured", "not_fractured"),
                                          ("FRACTURE", "fractured")])
def test_class_aliases(tmp_path, folder, label):
    touch_image(tmp_path / "train" / folder / "a.png")
    (s,) = D.read_dataset(tmp_path)
    assert s.label == label and s.split == "train"


def test_folder_layout_splits_and_unknown_folders(tmp_path):
    for split in ("train", "valid", "test"):
        touch_image(tmp_path / split / "fractured" / "a.jpg")
        touch_image(tmp_path / split / "normal" / "b.png")
    touch_image(tmp_path / "train" / "misc" / "c.png")
    (tmp_path / "train" / "fractured" / "notes.txt").write_text("x")
    samples = D.read_dataset(tmp_path)
    assert sorted({s.split for s in samples}) == ["test", "train", "val"]
    assert len(samples) == 6
    assert len(D.select_split(samples, "val")) == 2


def test_flat_class_layout_is_split_all(tmp_path):
    touch_image(tmp_path / "fractured" / "a.png")
    touch_image(tmp_path / "not_fractured" / "b.png")
    assert {s.split for s in D.read_dataset(tmp_path)} == {"all"}


def test_split_csv_with_groups_and_meta(tmp_path):
    touch_image(tmp_path / "img" / "a.png")
    csv = tmp_path / "split.csv"
    csv.write_text("path,label,split,group,hardware\nimg/a.png,Fractured,train,g1,1\n")
    (s,) = D.read_dataset(csv)
    assert s.path == tmp_path / "img" / "a.png" and s.group == "g1" and s.meta["hardware"] == "1"
    assert s.target == 1


@pytest.mark.parametrize("content,message", [
    ("file,label\nx.png,fractured\n", "missing column"),
    ("path,label,split\nx.png,broken,train\n", "unknown label"),
])
def test_bad_csv(tmp_path, content, message):
    csv = tmp_path / "s.csv"
    csv.write_text(content)
    with pytest.raises(D.DatasetError, match=message):
        D.read_dataset(csv)


def test_missing_and_empty(tmp_path):
    with pytest.raises(D.DatasetError, match="no such file"):
        D.read_dataset(tmp_path / "nope")
    with pytest.raises(D.DatasetError, match="no images found"):
        D.read_dataset(tmp_path)


def test_class_without_images_is_named(tmp_path):
    touch_image(tmp_path / "train" / "fractured" / "a.png")
    samples = D.read_dataset(tmp_path)
    with pytest.raises(D.DatasetError, match="not_fractured"):
        D.require_both_classes(samples, "train")
