"""Small bundled data sets for demos and tests (no downloads)."""

from bpsn_ext.data.digits import DigitsSplit, load_digits

__all__ = ["DigitsSplit", "load_digits"]
