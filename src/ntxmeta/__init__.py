"""ntxmeta: a reproducible evidence pipeline for naltrexone trials.

The statistics engine (``ntxmeta.effects``, ``ntxmeta.rma`` and friends)
reproduces R's metafor 3.8-1; the command line (``ntxmeta``) and the
Snakemake workflow around it turn trial CSVs into figures, tables and a
report. The package never imports Snakemake.
"""

__version__ = "0.1.0"
