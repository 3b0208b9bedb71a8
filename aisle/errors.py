"""Typed errors. Domain code raises them; only the CLI and HTTP layers map them to exits."""

from __future__ import annotations


class AisleError(ValueError):
    """Base for user-facing errors: the message says what to fix."""


class DataError(AisleError):
    """Input data is malformed (missing file/column, duplicate ids, bad grades, ...)."""


class ManifestMismatch(AisleError):
    """An artifact was built from something other than what it is being used with."""


class ArtifactError(AisleError):
    """An artifact directory is missing, incomplete or corrupt."""
