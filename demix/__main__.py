"""``python -m demix``: the same CLI as the ``demix`` console script."""

from demix.cli import main

main()
