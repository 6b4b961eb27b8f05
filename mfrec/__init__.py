"""mfrec: config-driven experiments for matrix-factorization recommenders.

The pieces live in their own modules: ``mfrec.model`` (MatrixFactorization), ``mfrec.module``
(MFModule), ``mfrec.data`` (sources, splits, RatingsDataModule), ``mfrec.metrics``,
``mfrec.recommend``; the commands in ``mfrec.train``, ``mfrec.evaluate``, ``mfrec.data.cli``.
"""

from mfrec.errors import ConfigError, DataError, DivergenceError, MfrecError

__all__ = ["ConfigError", "DataError", "DivergenceError", "MfrecError"]
__version__ = "0.1.0"
