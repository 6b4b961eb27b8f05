"""Ratings sources, splits and the Lightning DataModule that batches them.

Names are imported on first use, so that light commands (``mfrec-data``) do not pay for torch and
Lightning at start-up.
"""

from importlib import import_module

_WHERE = {
    "Ratings": "mfrec.data.ratings",
    "RatingsDataModule": "mfrec.data.datamodule",
    "TripleLoader": "mfrec.data.loader",
    "DenseMatrix": "mfrec.data.sources",
    "Triples": "mfrec.data.sources",
    "MovieLens": "mfrec.data.movielens",
    "CsvRatings": "mfrec.data.csv_source",
    "SyntheticRatings": "mfrec.data.synthetic",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'mfrec.data' has no attribute '{name}'")
    return getattr(import_module(_WHERE[name]), name)
