"""The one base of every request model: a field the model does not declare is refused.

A client that sends ``user_id``, ``completed_at`` or a misspelt field gets ``422
invalid_input`` naming the field, instead of the field being silently ignored (which would
let a client believe it set something that is the server's). Every JSON body model of the
API derives from :class:`RequestModel`, including the models the route factory in
``resources`` builds at runtime.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """A request body (or query) model that forbids fields it does not declare."""

    model_config = ConfigDict(extra="forbid")
