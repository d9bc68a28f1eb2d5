from agentfirewall_proxy.main import main

raise SystemExit(main())
