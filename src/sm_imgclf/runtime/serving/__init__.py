"""Serving inside a container: the handler, the endpoint server and its batcher."""
