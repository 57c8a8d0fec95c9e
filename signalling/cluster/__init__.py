"""Many hub nodes acting as one, through Redis (`[redis] url`); docs/cluster.md is the design.

Every node is a *gateway* (gateway.py): its hub authenticates WebSockets and decodes frames
as on one node, and hands what a client said to the gateway (`connect`, `message`,
`closed`), which publishes it to the authority's inbox. One node at a time, the *authority*
(leader.py: the holder of the Redis lease, lease.py), runs the province's switchboard: it
applies what gateways publish, in the order its inbox receives it, and its hub performs the
actions as on one node, except that `ClusterRouter` routes each delivery to the node serving
its recipient (`where`) and `ClusterMedia` hands each call's media to the call's media node
(both in routing.py). What the authority decides beyond the switchboard (where users are,
reconciling a resync, a node's death, a dead authority's journal) is pure, in authority.py.
Everything this node writes to Redis goes through one ordered `RedisWriter` (writer.py). The
authority is also a gateway: what its own clients say is applied directly, without a round
trip through Redis. link.py (`RedisCoreLink`) builds the parts and is the hub's `CoreLink`.

Theory of operation
-------------------
* Order. Each node publishes through one connection, in one task (`RedisWriter`), in the order
  its clients spoke; Redis keeps each publisher's order on a channel. So the core sees each
  client's messages in order, and each gateway sees the core's deliveries in order.
* Where a user is. The authority learns it from `connect` (the node that sent it) and
  applies it at the user's welcome: what the core says to the user before its welcome
  (to the connection being replaced, perhaps on another node) still goes to the old node.
  Other nodes (a media node answering a member) find a user through `presence:<user>`,
  which each gateway writes for its connections and refreshes every heartbeat.
* Nobody listening. PUBLISH to the inbox answers how many subscribers heard it: 0 means no
  authority (between two, or Redis unreachable), and the client is told `unavailable` (or,
  for a new connection, closed with 1013 "try again later") instead of waiting in vain.
* Resync. Messages published while nobody listened, or while a subscription was down, are
  lost, so whenever that may have happened (an authority takes the lease, or a
  subscription comes back) gateways report every connection they serve (`Report`). The
  authority reconciles: sessions it knows are welcomed again with the current state, ones
  it does not know are adopted (`Switchboard.adopt`, not a new sign-in), and sessions that
  node no longer serves have their connection's close applied.
* Node death. The registry (registry.py, over the pure nodes.py) tells every node once per
  death; the authority ends the calls of the dead node's users and of the calls whose media
  it hosted with `node_lost`, and signs its users out (`Switchboard.lose`). A user who
  reconnected elsewhere in the meantime resumed their session from a live node and is left
  alone.
* A new authority. A node taking the lease keeps the switchboard it had if nobody else held
  the lease since (a Redis restart, a partition of its own); otherwise it starts with an
  empty one, adopts every reported session, and ends what the dead authority left in the
  journal (journal.py), except its conferences, which it restores from their journalled
  snapshots and carries on (`Conferences.adopt`), their media kept on the live nodes. A
  node that was not the last holder waits one lease TTL after seeing the lease free before
  taking it, so that after a Redis restart the previous authority, with its calls, gets it
  back.
* Python 3.11 can swallow a cancel delivered inside a redis-py call, so every loop here also
  waits on a stop event, and stopping sets it before cancelling.

Redis keys and channels are in keys.py, the messages on them in wire.py.
"""

from signalling.cluster.link import RedisCoreLink

__all__ = ["RedisCoreLink"]
