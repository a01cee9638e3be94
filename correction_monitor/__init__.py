"""correction-monitor: location supervision backend for community correction (社区矫正)."""

__version__ = "0.1.0"
