"""Backends: IR -> Python source. Each is a template plus the printer of what differs."""

BACKENDS = ("torch", "triton")
