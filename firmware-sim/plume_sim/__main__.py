"""`python -m plume_sim FILE ...`, the same as the `plume-sim` console script."""

from plume_sim.cli import main

main()
