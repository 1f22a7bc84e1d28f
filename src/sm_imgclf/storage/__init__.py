"""Stores: where datasets, jobs and models live (a local directory or an S3 bucket)."""

from sm_imgclf.contracts.storage import ObjectInfo, Store, TransferSummary, UploadItem
from sm_imgclf.storage.upload import upload_files

sync_files = upload_files  # its earlier name; it has only ever uploaded

__all__ = ["ObjectInfo", "Store", "TransferSummary", "UploadItem", "sync_files", "upload_files"]
