"""`python -m daemon`: the same as the `vaultd` command."""

from daemon.cli.main import main

raise SystemExit(main())
