from routeray.cli import main

raise SystemExit(main())
