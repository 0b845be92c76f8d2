"""``python -m purelearn``: the same command line as ``purelearn`` (see :mod:`purelearn.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
