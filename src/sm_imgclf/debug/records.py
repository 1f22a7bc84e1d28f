"""Moved to :mod:`sm_imgclf.runtime.checks.records`; this path keeps working."""

from sm_imgclf.runtime.checks.records import RECORDS, Records, read_records

__all__ = ["RECORDS", "Records", "read_records"]
