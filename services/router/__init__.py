"""Smart order router: a pure core (core.py) splitting approved orders across simulated venues."""

from common.router_config import RouterConfig, VenueConfig

from .core import ALGOS, RouterCore

__all__ = ["ALGOS", "RouterConfig", "RouterCore", "VenueConfig"]
