"""forge: get coding work done by many language models at once, cheaply and safely."""

__version__ = "0.1.0"
