"""Pre-trade risk gate: a pure core (core.py) over the sequenced stream, configured by config.py."""

from common.risk_config import RiskConfig

from .core import REASONS, RiskCore

__all__ = ["REASONS", "RiskConfig", "RiskCore"]
