"""The `sgn-ros` entry point: help, unknown commands, `python -m sgn_ros`."""

import subprocess
import sys

from sgn_ros.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_unknown_command_fails_with_message(capsys):
    try:
        main(["frobnicate"])
    except SystemExit as e:
        assert e.code == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "sgn_ros", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "convert-checkpoint" in r.stdout


def test_every_subcommand_module_exists():
    import importlib

    for name, (module, _) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.main), name
