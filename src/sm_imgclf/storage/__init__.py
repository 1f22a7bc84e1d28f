"""Stores: where datasets, jobs and models live (a local directory or an S3 bucket)."""

from sm_imgclf.storage.base import ObjectInfo, Store, TransferSummary, UploadItem
from sm_imgclf.storage.sync import sync_files

__all__ = ["ObjectInfo", "Store", "TransferSummary", "UploadItem", "sync_files"]
