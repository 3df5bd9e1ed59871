"""Tests of common.accounting."""
