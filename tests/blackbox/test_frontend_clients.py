"""test_clients.py's cases, run through a front end over two back ends
(frontend_harness.py): every client-visible behaviour of the embedded
default must hold through the front end too (issue 4)."""

from test_clients import *  # noqa: F401,F403  (the cases and their fixtures)

from frontend_harness import site  # noqa: F401,E402  (overrides conftest's: start() runs a front end)
