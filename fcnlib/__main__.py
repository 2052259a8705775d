"""python -m fcnlib: see fcnlib.cli."""

from fcnlib.cli import main

main()
