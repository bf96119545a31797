"""``python -m bpsn_ext`` runs the command line (see ``bpsn_ext.cli``)."""

from bpsn_ext.cli import console_main

raise SystemExit(console_main())
