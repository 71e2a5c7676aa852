"""``worker.exceptions`` on headrace: the ingest failure hierarchy."""

from headrace.errors import IngestError, IngestRejected, IngestUnavailable

__all__ = ["IngestError", "IngestRejected", "IngestUnavailable"]
