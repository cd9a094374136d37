"""The ``skimgcls`` command line."""

import argparse
import sys

__all__ = ["main"]


def _demo(args):
    from ._demo import run_demo

    run_demo(out=args.out, max_epochs=args.epochs, random_state=args.seed)
    return 0


def build_parser():
    """Return the ``argparse`` parser of the ``skimgcls`` command."""
    parser = argparse.ArgumentParser(
        prog="skimgcls",
        description="Image classification the scikit-learn way.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train on scikit-learn's bundled digits images, report and save",
        description="Train CNNClassifier on scikit-learn's bundled 8x8 digits "
        "images, print the test accuracy and a classification report, and save "
        "the model.",
    )
    demo.add_argument("--out", default="model-digits", help="model directory "
                      "(default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=15, help="training epochs "
                      "(default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random_state "
                      "(default: %(default)s)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Run the ``skimgcls`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"skimgcls {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
