"""uploads-api: a self-hostable file upload processing service."""

__version__ = "0.1.0"
