from agentfirewall_server.main import main

raise SystemExit(main())
