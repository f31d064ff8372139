"""The ledger's HTTP API (`ledger serve`, issue 12): FastAPI app, roles and bearer tokens."""
