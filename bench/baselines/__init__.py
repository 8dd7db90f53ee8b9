"""The systems uploads-api is measured against: the FastAPI tutorial pattern and nginx."""
