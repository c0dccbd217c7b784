"""What the upload services refuse: one exception per answer the API gives (``status``,
``code``), with the reason in words and ``details`` for a client to act on."""

from __future__ import annotations


class UploadError(Exception):
    """A request the upload's state or the input does not allow. ``code`` and ``status``
    are what the API answers; the message says why in words."""

    status = 422
    code = "invalid"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details


class UploadInvalid(UploadError):
    status, code = 422, "validation_error"


class UploadNotFound(UploadError):
    status, code = 404, "not_found"


class UploadConflict(UploadError):
    status, code = 409, "conflict"


class UploadTooLarge(UploadError):
    status, code = 413, "too_large"


class PartChecksumError(UploadError):
    status, code = 400, "checksum_mismatch"


class UploadChecksumError(UploadError):
    status, code = 422, "checksum_mismatch"


class LengthRequired(UploadError):
    status, code = 411, "length_required"
