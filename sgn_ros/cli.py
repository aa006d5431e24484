# The `sgn-ros` command (also `python -m sgn_ros`): one entry point, one subcommand per tool.
# Subcommand modules are imported lazily so that `sgn-ros --help` is fast and a tool that
# needs no ROS never imports rclpy. A user error (ValueError and its kin CheckpointError /
# DataError, a missing file) prints one line and exits with 2; a traceback appears only with
# --debug or for a true bug (any other exception).
"""Command-line entry point with subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Exceptions that mean "the input is wrong", not "the program is wrong".
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError,
                                                IsADirectoryError, PermissionError)

#: subcommand -> (module, one-line help). Each module defines
#: ``add_arguments(parser: argparse.ArgumentParser) -> None`` and ``main(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "convert-checkpoint": ("sgn_ros.model.convert", "convert a released SGN checkpoint into sgn_ros format"),
    "synth": ("sgn_ros.data.synth.cli", "write a synthetic SemanticKITTI sequence"),
    "preprocess": ("sgn_ros.data.preprocess", "prepare labels / pseudo-LiDAR / stereo depth"),
    "evaluate": ("sgn_ros.evaluation.cli", "score predictions or a checkpoint (SemanticKITTI protocol)"),
    "export": ("sgn_ros.evaluation.export", "write predictions in the benchmark submission format"),
    "train": ("sgn_ros.training.cli", "train SGN (one process or torchrun)"),
    "train-stereo": ("sgn_ros.stereo.train", "train MobileStereoNet on stereo pairs with true depth (synthetic world)"),
    "kitti-to-bag": ("sgn_ros.ros.kitti_to_bag", "write a KITTI sequence as a rosbag2 (mcap)"),
    "replay": ("sgn_ros.ros.replay", "replay a KITTI rosbag (kitti2bag, kitti2mcap, kitti-to-bag) through sgn_node"),
    "demo": ("sgn_ros.ros.demo", "replay a synthetic sequence through the node and render pictures"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgn-ros", description="SGN semantic scene completion tools")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (any position)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in SUBCOMMANDS:
        parser = build_parser()
        if command is not None:
            parser.error(f"unknown command {command!r}; choose from {', '.join(SUBCOMMANDS)}")
        parser.print_help()
        return 0 if ("-h" in argv or "--help" in argv) else 2
    args = build_parser(only=command).parse_args(argv)
    args.debug = debug
    module = importlib.import_module(SUBCOMMANDS[command][0])
    try:
        return int(module.main(args) or 0)
    except USER_ERRORS as e:
        if debug:
            raise
        return report_user_error(command, e)


def report_user_error(command: str, error: BaseException) -> int:
    """Print `error` as one line on stderr (its chain left out) and return the exit status 2."""
    text = " ".join(str(error).split()) or type(error).__name__
    sys.stderr.write(f"sgn-ros {command}: error: {text} (--debug shows the traceback)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
