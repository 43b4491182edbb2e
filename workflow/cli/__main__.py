"""`python -m workflow.cli`: the same app as the `tnt` script."""

from workflow.cli import main

main()
