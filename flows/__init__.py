"""Prefect flows of drp and its command line.

Prefect reads its settings when first imported. Without PREFECT_API_URL a flow starts a
temporary API server, which needs more than Prefect's default 20 s to come up on a small
machine: give it 90 s unless the operator said otherwise.
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
