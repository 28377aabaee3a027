"""The one CLI: --help on every level, one-line errors with non-zero exits for bad input."""
import subprocess
import sys

import pytest

from fracture_edge.edge_runtime.cli import build_parser, main

SUBCOMMANDS = [["train"], ["eval"], ["demo"], ["data"], ["data", "check"], ["data", "split"],
               ["export"], ["predict"], ["info"], ["bench"]]


@pytest.mark.parametrize("words", [[]] + SUBCOMMANDS)
def test_help_on_every_level(words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(words + ["--help"])
    assert exc.value.code == 0
    assert "usage: fracture-edge" in capsys.readouterr().out


def test_every_subcommand_is_registered():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert {w[0] for w in SUBCOMMANDS} <= set(choices)


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "fracture_edge.edge_runtime", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("fracture-edge ")


@pytest.mark.parametrize("argv,message", [
    (["train", "--data", "/nonexistent/data", "--out", "{tmp}/run", "--weights", "none"], "/nonexistent/data: no such file"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--finetune-from", "conv9"], "--finetune-from must be one of"),
    (["eval", "{tmp}"], "no bundle.json"),
])
def test_bad_input_gives_one_line_and_exit_1(argv, message, tmp_path, capsys):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("fracture-edge: error:") and message in err[-1]


def test_usage_errors_exit_1_not_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict"])  # missing positional arguments
    assert exc.value.code == 1
    assert "error:" in capsys.readouterr().err


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os

    from fracture_edge.edge_runtime import atomic

    path = atomic.write_text(tmp_path / "bundle.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_export_defaults_are_the_export_options_defaults():
    from pathlib import Path

    from fracture_edge.export.cli import options_from_args
    from fracture_edge.export.options import ExportOptions

    opts = options_from_args(build_parser().parse_args(["export", "runs/x", "--threads", "3"]))
    assert opts == ExportOptions(run_dir=Path("runs/x"), num_threads=3)
