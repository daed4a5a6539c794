"""Test helpers shared by the test suites: the aiortc test peer."""
