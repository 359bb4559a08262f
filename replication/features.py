"""What this version of the node can do that earlier ones cannot, so a
cluster being upgraded one node at a time uses a new log format only once
every member reads it.

Every answer a node gives carries ``X-Shoal-Features`` with the names
below; a leader reads them from its followers' answers. A name missing
from a member's answers (an older node, or one not heard from yet) keeps
the feature off.
"""

from __future__ import annotations

HEADER = "X-Shoal-Features"
# Commands carry the fingerprint of the request behind their Idempotency-Key
# (node.idempotency); older nodes cannot read such commands.
REQUEST_FINGERPRINTS = "request-fingerprints"
OURS = frozenset({REQUEST_FINGERPRINTS})
