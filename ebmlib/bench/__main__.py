from ebmlib.bench.cli import main

raise SystemExit(main())
