"""Checks inside every training job: the recorder, the profiler and the rules they feed."""
