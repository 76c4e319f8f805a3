"""Kumo's Python function runtime.

Runs a user's ``handler(event, context)`` behind a small HTTP server, one
invocation per worker process at a time, so a timed-out invocation can be cut
off by ending its process. Start it with ``python3 -m kumo_runtime``; see
``runtime/README.md`` for the contract.

Standard library only: the image's ``deps/`` layer belongs to the user.
"""

__version__ = "0.1.0"
