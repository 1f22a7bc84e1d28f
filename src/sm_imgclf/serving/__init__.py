"""Serving: the inference handler inside every model package."""
