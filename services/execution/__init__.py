"""Execution: the child-order state machine and the simulated exchange (pure cores, no sockets)."""
