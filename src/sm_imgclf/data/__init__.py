"""Datasets: folder layouts, validation, manifests, splitting and imports."""
