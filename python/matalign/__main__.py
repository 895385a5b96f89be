"""``python -m matalign``: the same command line as the ``matalign`` script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
