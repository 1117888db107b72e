"""``python -m fstore`` runs the CLI."""

from fstore.cli import main

main()
