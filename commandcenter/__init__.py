"""commandcenter: real-time command-center server for court enforcement officers."""

__version__ = "0.1.0"
