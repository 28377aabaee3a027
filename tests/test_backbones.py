"""The backbone table (train/backbones.py): option resolution, bundle compatibility, and each backbone built tiny."""
import pytest

from fracture_edge.edge_runtime.bundle_schema import bundle_problems
from fracture_edge.train.backbones import BACKBONES, DEFAULT_BACKBONE, backbone_of, get_backbone
from fracture_edge.train.options import TrainOptions


def test_densenet121_stays_the_default_with_its_old_defaults():
    opts = TrainOptions(data="d", out="o")
    assert (opts.backbone, opts.size, opts.finetune_from) == ("densenet121", 320, "conv5") == (DEFAULT_BACKBONE, 320, "conv5")


def test_the_mobile_backbone_resolves_its_own_size_and_tail():
    opts = TrainOptions(data="d", out="o", backbone="mobilenetv2-0.35")
    assert (opts.size, opts.finetune_from) == (224, "block13")
    assert TrainOptions(data="d", out="o", backbone="mobilenetv2-0.35", size=96, finetune_from="none").size == 96


@pytest.mark.parametrize("kwargs, message", [
    ({"backbone": "resnet50"}, "--backbone must be one of densenet121, mobilenetv2-0.35"),
    ({"backbone": "mobilenetv2-0.35", "finetune_from": "conv5"}, r"--finetune-from must be one of block16.*\(--backbone mobilenetv2-0.35\)"),
    ({"finetune_from": "block13"}, r"--finetune-from must be one of conv5.*\(--backbone densenet121\)"),
])
def test_a_wrong_backbone_or_tail_is_one_clear_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainOptions(data="d", out="o", **kwargs)


def test_a_bundle_without_a_backbone_is_densenet121():
    assert backbone_of({}) is BACKBONES["densenet121"]
    assert backbone_of({"backbone": "mobilenetv2-0.35"}).model == "MobileNetV2-0.35"
    with pytest.raises(ValueError, match="--backbone must be one of"):
        get_backbone("vgg")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_each_backbones_input_contract_passes_the_schema(name):
    from fracture_edge.edge_runtime.preprocessing import InputContract

    contract = InputContract(size=64, normalization=BACKBONES[name].normalization).to_dict()
    bundle = {"schema_version": 1, "labels": ["not_fractured", "fractured"], "positive_label": "fractured",
              "thresholds": {"balanced": 0.5, "screening": 0.2, "default": "balanced"},
              "input": contract, "output": {"kind": "sigmoid", "positive_index": 0}}
    assert bundle_problems(bundle) == []
    assert bundle_problems({**bundle, "input": {**contract, "normalization": "x/255"}})[0].startswith("input.normalization")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BACKBONES))
def test_each_backbone_builds_with_in_graph_preprocessing_and_named_layers(name):
    """Raw pixels in, P(fractured) out; the preprocessing layer maps 0 and 255 to the backbone's range; every
    tail's cached layer and the last feature map exist."""
    pytest.importorskip("tensorflow")
    import numpy as np

    from fracture_edge.train.model import build_model, feature_extractor

    row = BACKBONES[name]
    model = build_model(64, "none", backbone=name)
    assert model.input.shape[1:] == (64, 64, 3) and model.output.shape[1:] == (1,)
    for layer in (*row.tails.values(), row.feature_map):
        model.get_layer(layer)
    pixels = np.zeros((1, 64, 64, 3), np.float32)
    pixels[0, 0, 1] = 255.0
    ends = feature_extractor(model, "imagenet_normalization")(pixels).numpy()[0, 0, :2]
    expected = {"densenet121": ([-2.1179, -2.0357, -1.8044], [2.2489, 2.4286, 2.64]),
                "mobilenetv2-0.35": ([-1.0] * 3, [1.0] * 3)}[name]
    assert np.allclose(ends, expected, atol=1e-3)


def test_the_stem_lowpass_flag_reaches_the_options_and_is_off_by_default():
    from fracture_edge.edge_runtime.cli import build_parser
    from fracture_edge.train.cli import _options_from_args

    parse = build_parser().parse_args
    assert _options_from_args(parse(["train", "--data", "d", "--out", "o"])).stem_lowpass is False
    opts = _options_from_args(parse(["train", "--data", "d", "--out", "o", "--stem-lowpass"]))
    assert opts.stem_lowpass is True and opts.to_dict()["stem_lowpass"] is True    # bundle.json hparams record it


@pytest.mark.slow
def test_the_stem_lowpass_is_a_frozen_binomial_after_the_normalization_that_survives_saving(tmp_path):
    pytest.importorskip("tensorflow")
    import keras
    import numpy as np

    from fracture_edge.export.stem_fold import stem_layers
    from fracture_edge.train.model import STEM_LOWPASS_LAYER, build_model, feature_extractor

    model = build_model(64, "none", stem_lowpass=True)
    assert not model.get_layer(STEM_LOWPASS_LAYER).trainable
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    normalized = feature_extractor(model, "imagenet_normalization")(pixels).numpy()
    blurred = feature_extractor(model, STEM_LOWPASS_LAYER)(pixels).numpy()
    taps = np.array([1.0, 2.0, 1.0]) / 4
    window = normalized[:, 9:12, 19:22, :]                  # the 3x3 neighbourhood of pixel (10, 20)
    assert np.allclose(blurred[:, 10, 20], np.einsum("nijc,i,j->nc", window, taps, taps), atol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)
    assert np.allclose(again(pixels), model(pixels), atol=1e-6)
    with pytest.raises(ValueError, match="not followed by zero padding"):
        stem_layers(model)                                  # export skips the normalization fold, with a warning
