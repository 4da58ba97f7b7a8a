"""The REST API: a thin FastAPI face over the services (``urbansec serve``)."""
