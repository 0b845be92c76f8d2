"""``python -m purelearn``: the same command line as ``purelearn`` (see :mod:`purelearn.app.cli`)."""

from .app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
