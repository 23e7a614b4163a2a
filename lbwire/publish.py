"""Pipelined publishing over Liftbridge's PublishAsync stream (see `lbwire._publish`).

Kept as a module path for the names it always exported.
"""

from __future__ import annotations

from ._publish import PendingAck, PublishSession

__all__ = ["PendingAck", "PublishSession"]
