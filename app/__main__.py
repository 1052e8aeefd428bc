"""`python -m app` runs Hearth (the window by default, subcommands for the CLI)."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
