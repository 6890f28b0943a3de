"""The `tollway` command line, built on typer + rich."""
