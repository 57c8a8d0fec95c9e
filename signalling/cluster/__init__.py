"""Many hub nodes acting as one, through Redis (`[redis] url`); docs/cluster.md is the design."""

from signalling.cluster.link import RedisCoreLink

__all__ = ["RedisCoreLink"]
