"""`python -m tollway` runs the CLI."""

from tollway.cli.main import main

main()
