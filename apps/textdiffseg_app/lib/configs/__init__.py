"""App settings parsed from ``--conf``."""
