"""The ``align`` command of the wheel (also ``python -m onnx_align``): the
Rust CLI itself, run in this process."""

import signal
import sys

from . import _native


def main() -> None:
    """Run ``align`` with ``sys.argv`` and exit with its code."""
    # Ctrl-C ends the command at once, as it does the native binary
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_native.main(["align", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
