"""Every test (and every `mha` process a test starts) keeps the matmul-peak cache in a private folder."""

from __future__ import annotations

import os
import tempfile

os.environ["MHA_CACHE_DIR"] = tempfile.mkdtemp(prefix="mha-test-cache-")
