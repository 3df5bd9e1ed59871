"""Tests of the Binance spot execution adapter against a local server."""
