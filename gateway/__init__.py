"""Realtime gateway: a WebRTC relay between browsers and the OpenAI Realtime API."""

__version__ = "0.1.0"
