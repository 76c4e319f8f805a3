"""``python3 -m kumo_runtime``: serve the function named by ``KUMO_HANDLER``.

The server starts its worker processes as ``python3 -m kumo_runtime --worker ...``.
"""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "--worker":
    from kumo_runtime.worker import main as worker_main

    raise SystemExit(worker_main(sys.argv[2:]))

from kumo_runtime.server import main

raise SystemExit(main())
