"""mfrec: config-driven experiments for matrix-factorization recommenders."""

from mfrec.errors import ConfigError, DataError, DivergenceError, MfrecError
from mfrec.model import MatrixFactorization

__all__ = ["ConfigError", "DataError", "DivergenceError", "MatrixFactorization", "MfrecError"]
__version__ = "0.1.0"
