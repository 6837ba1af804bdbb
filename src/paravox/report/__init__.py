"""Report layer: tables and plots of data and runs."""
