"""Sweeps (``mfrec-train -m``): job directory names, the summary table and plot, the end-of-sweep report."""
