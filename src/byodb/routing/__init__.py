"""Where each query goes: table placement, the per-user engine cache, the router that blocks."""

from byodb.instances.lifecycle.states import Placement
from byodb.routing.placement import placement_of
from byodb.routing.router import Route, Router

__all__ = ["Placement", "Route", "Router", "placement_of"]
