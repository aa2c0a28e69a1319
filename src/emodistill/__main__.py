from emodistill.cli import main

raise SystemExit(main())
