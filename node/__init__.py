"""The Shoal node process: HTTP app, service, state machine, settings, CLI."""
