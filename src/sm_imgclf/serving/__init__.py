"""Serving from the client side: the endpoint client.

The handler and the endpoint server run inside containers: see ``runtime.serving``;
evaluating an endpoint is ``evaluation``.
"""
