"""Serving from the client side: the endpoint client and evaluation.

The handler and the endpoint server run inside containers: see ``runtime.serving``.
"""
