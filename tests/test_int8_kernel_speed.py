"""experiments/int8_kernel_speed.py: its table arithmetic (fast) and its cuts and timing on a tiny prefix (slow)."""
import json

import pytest

from fracture_edge.experiments import int8_kernel_speed as speed


def rows():
    return [{"cut": "stem", "shape": [8, 8, 16],
             "p50_ms": {"fp32 t1": 1.0, "int8 t1": 2.0, "fp32 t2": 0.5, "int8 t2": 0.25}}]


def test_the_table_shows_each_time_and_the_int8_over_fp32_ratio_per_thread_count():
    table = speed.markdown(rows(), (1, 2)).splitlines()
    assert table[0].startswith("| network up to | output | fp32 t1 ms | int8 t1 ms | fp32 t2 ms | int8 t2 ms |")
    assert table[2] == "| stem | 8x8x16 | 1.00 | 2.00 | 0.50 | 0.25 | 2.00x | 0.50x |"


def test_an_unknown_backbone_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        speed.main(["--backbone", "resnet50"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(speed.CUTS))
def test_every_cut_is_a_layer_of_the_backbone(backbone):
    pytest.importorskip("tensorflow", reason="building the backbone needs TensorFlow")
    cuts = speed.prefix_models(backbone, 64, "none")
    assert [name for name, _ in cuts] == list(speed.CUTS[backbone])
    assert all(len(model.output.shape) == 2 for _, model in cuts)  # pooled: (batch, channels)


@pytest.mark.slow
def test_a_tiny_prefix_is_converted_timed_and_written(monkeypatch, tmp_path, capsys):
    pytest.importorskip("tensorflow", reason="conversion needs TensorFlow")
    monkeypatch.setitem(speed.CUTS, "mobilenetv2-0.35", ("Conv1_relu",))
    monkeypatch.setattr(speed, "WARMUP", 2)
    out = tmp_path / "speed.json"
    assert speed.main(["--size", "32", "--threads", "1", "--runs", "5", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    (row,) = record["rows"]
    assert row["cut"] == "Conv1_relu" and row["shape"] == [16, 16, 16]
    assert set(row["p50_ms"]) == {"fp32 t1", "int8 t1"} and all(v > 0 for v in row["p50_ms"].values())
    assert "| Conv1_relu | 16x16x16 |" in capsys.readouterr().out
