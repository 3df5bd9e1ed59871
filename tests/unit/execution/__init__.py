"""Tests of services.execution: the order state machine and the simulated exchange."""
