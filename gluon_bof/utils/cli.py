"""Small command-line helpers every script and ``python -m`` entry point uses: running a ``main``
with one-line error messages (:func:`run_script`), the help formatter and ``"1,2" -> [1, 2]``.
The training flags themselves are in scripts/common.py.
"""
import argparse
import os
import sys

from ..errors import GluonBofError

__all__ = ["HelpFormatter", "parser_error", "parse_ints", "run_script", "USER_ERRORS"]

# what a user's mistake raises (bad flags, files, data): one line and exit status 2, no traceback
USER_ERRORS = (GluonBofError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def run_script(main, argv=None) -> None:
    """Runs a script's ``main(argv)`` the way its ``__main__`` block should: a user's mistake
    (:data:`USER_ERRORS`, or ``SystemExit`` carrying a message) becomes one line on stderr,
    ``<script>: error: <message>``, printed by rank 0 only under torchrun, and exit status 2
    (argparse's own convention); a bug keeps its traceback."""
    try:
        main(argv)
        return
    except SystemExit as e:
        if not isinstance(e.code, str):
            raise
        message = e.code
    except USER_ERRORS as e:
        message = str(e)
    if os.environ.get("RANK", "0") == "0":
        print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parser_error(parser: argparse.ArgumentParser, message: str) -> None:
    """``parser.error(message)`` (usage, ``<prog>: error: <message>``, exit status 2) printed by
    rank 0 only, so torchrun's processes do not repeat it on top of each other."""
    if os.environ.get("RANK", "0") == "0":
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every flag's default and keeps the description's line breaks."""


def parse_ints(text: str):
    """"160,180" -> [160, 180]."""
    return [int(x) for x in str(text).split(",") if x.strip()]
