"""Estimating latency without a board: the traced layer graph, its costs, calibrations and their fit.

Nothing here runs a backend or an agent: predict/ and measure/ meet only in the shared modules beside
them (``nasseg.latency.result``, ``targets``, ``timing``, ``errors``), which tests/test_layout.py enforces.
"""
