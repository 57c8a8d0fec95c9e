"""Typed keys of the aiohttp application's state."""

from __future__ import annotations

from aiohttp import web

from commandcenter.config import Config
from sessions.recorder import SessionRecorder
from signalling.hub import Hub

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
RECORDER = web.AppKey("recorder", SessionRecorder)
