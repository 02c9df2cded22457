"""The upstreams: which OpenAI-compatible server serves a model (``routing``) and how one call is made (``client``)."""

from batchq.upstream.client import UpstreamAnswer, UpstreamClient, UpstreamFailure
from batchq.upstream.routing import Route, RouteTable

__all__ = ["Route", "RouteTable", "UpstreamAnswer", "UpstreamClient", "UpstreamFailure"]
