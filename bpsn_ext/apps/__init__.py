"""Small end-to-end applications (``bpsn-ext demo``)."""

from bpsn_ext.apps.demo import demo_report

__all__ = ["demo_report"]
