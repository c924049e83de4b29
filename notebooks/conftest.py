"""pytest collects the chapters as notebooks (nbval on *.ipynb); their jupytext twins NN_topic.py
are sources, and importing one under --doctest-modules would run the whole chapter."""

collect_ignore_glob = ["*.py"]
