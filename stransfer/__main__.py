"""`python -m stransfer` (and `torchrun -m stransfer`) run the command-line tool."""

from stransfer.cli import main

main()
