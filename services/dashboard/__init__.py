"""The live dashboard: a read-only view of the sequenced stream over HTTP + WebSocket."""
