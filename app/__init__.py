"""Hearth: a desktop assistant that lives on the user's own machine."""

__version__ = "0.1.0"
APP_NAME = "Hearth"
