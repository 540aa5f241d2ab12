"""`python -m scribeline` runs the command-line interface."""

from scribeline.cli import main

raise SystemExit(main())
