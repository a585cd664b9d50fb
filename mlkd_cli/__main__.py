from mlkd_cli.cli import cli

cli()
