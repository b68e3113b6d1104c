"""``python -m fkdbench``."""

from fkdbench.cli import main

main()
