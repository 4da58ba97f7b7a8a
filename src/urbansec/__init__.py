"""urbansec: identify, assess, forecast and tackle urban security threats together, on evidence."""

__version__ = "0.1.0"
