"""``python -m bench`` / ``make bench``; ``--help`` lists the flags."""

from bench.cli import main

raise SystemExit(main())
