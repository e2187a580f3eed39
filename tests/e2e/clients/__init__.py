"""Client drivers for the 2026-07-28 tests (``test_modern.py``, ``test_modern_attacks.py``).

* ``sdk``: runs one step script through the official TypeScript v2 client
  (``ts_client.mjs``, a Node subprocess) or the official Python client (``mcp==2.3.0``,
  in process), and reports in one shape, so a test asserts the same things of both;
* ``raw``: 2026-07-28 requests over plain httpx (envelope, headers, SSE read event by event)
  for what the SDKs would hide.
"""
