"""A built-in Realtime emulator: a test double speaking OpenAI's GA WebRTC contract.

It answers ``POST /v1/realtime/calls`` with a real aiortc peer, speaks the ``oai-events`` data
channel, detects turns by audio energy, plays the user's own speech back as the answer (or a
few tones for text), and calls function tools when the user names one. It is the default
upstream when no OpenAI key is configured, and the upstream of the test suite.
"""

from gateway.emulator.call import EmulatorCall
from gateway.emulator.server import Emulator, EmulatorSettings
from gateway.emulator.vad import InputAudioStats

__all__ = ["Emulator", "EmulatorCall", "EmulatorSettings", "InputAudioStats"]
