from correction_monitor.cli import main

raise SystemExit(main())
