"""``python -m batchq.bench`` / ``make bench``; ``--help`` lists the flags."""

from batchq.bench.cli import main

raise SystemExit(main())
