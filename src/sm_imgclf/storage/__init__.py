"""Stores: where datasets, jobs and models live (a local directory or an S3 bucket)."""

from sm_imgclf.contracts.storage import ObjectInfo, Store, TransferSummary, UploadItem
from sm_imgclf.storage.upload import upload_files

__all__ = ["ObjectInfo", "Store", "TransferSummary", "UploadItem", "upload_files"]
