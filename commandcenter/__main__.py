"""`python -m commandcenter`: the same command as the `commandcenter` script."""

from commandcenter.cli import main

raise SystemExit(main())
