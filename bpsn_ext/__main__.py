"""``python -m bpsn_ext`` runs the command line (see ``bpsn_ext.cli``)."""

from bpsn_ext.cli import main

raise SystemExit(main())
