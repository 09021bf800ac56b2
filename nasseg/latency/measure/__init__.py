"""Measuring latency on a device: clocks, backends, the board agent, the cache.

Nothing here knows the predictor: measure/ and predict/ meet only in the shared modules beside them
(``nasseg.latency.result``, ``targets``, ``timing``, ``errors``), which tests/test_layout.py enforces.
"""
