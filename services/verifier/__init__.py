"""The verifier: replays the stream through the same cores and checks every published state hash."""
