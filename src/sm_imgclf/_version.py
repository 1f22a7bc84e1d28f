"""The installed version of sm-imgclf."""

__version__ = "0.1.0"
