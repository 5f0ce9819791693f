"""The Streamlit app. Importing the package sets the process's BLAS defaults (see below)."""

import os

# One BLAS thread per computation. The baselines solve many small least-squares problems
# (a year of hours by a few dozen columns); OpenBLAS's worker threads gain nothing there and,
# when other sessions or the API share the cores, spin against each other: a site's fits took
# 2-5 s instead of 0.8 s. Set before numpy is first imported (app/main.py imports this package
# before core); an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
