"""Errors a user can cause. Each carries a message a person can act on; the UI shows it as it is."""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error caused by input, settings or the machine, rather than by a bug."""


class ValidationError(StudioError):
    """A request field is out of range or inconsistent."""


class ModelNotFoundError(StudioError):
    """A model file or folder is missing or not recognised."""


class ModelFormatError(StudioError):
    """A model file exists but cannot be loaded safely (pickle, unknown layout, corrupt)."""


class FamilyMismatchError(StudioError):
    """A ControlNet (or other add-on) was made for another model family than the base model."""


class ImageReadError(StudioError):
    """A condition image or PNG cannot be read."""


class WeightsNotFoundError(StudioError):
    """Optional weights (annotators, preview decoders) are not present locally."""


class OutOfMemoryError(StudioError):
    """The device ran out of memory; the message suggests what to lower or switch on."""


class ExportError(StudioError):
    """An image could not be written where asked."""
