"""Cosmic Atlas build pipeline: APOD archive → data lake (see ``python -m pipeline --help``)."""

__version__ = "0.1.0"
