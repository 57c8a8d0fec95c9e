"""The pure core of the signalling hub: no sockets, no clock, no tasks, no Redis.

`Switchboard` (switchboard.py) is the facade the drivers use; the sub-cores beside it each own
one part of the state (presence, views, dispatch, calls, facts), `call.py` is a call's state
machine as a table, `deadlines.py` the timers the driver arms, `actions.py` what the core asks
its driver to do. import-linter checks that nothing here imports asyncio, aiohttp, redis,
aiortc or jwt.
"""
