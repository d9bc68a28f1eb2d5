from agentfirewall_proxy.cli import main

raise SystemExit(main())
