"""Ratings sources, splits and the Lightning DataModule that batches them."""

from mfrec.data.datamodule import RatingsDataModule
from mfrec.data.loader import TripleLoader
from mfrec.data.ratings import Ratings
from mfrec.data.sources import DenseMatrix, Triples

__all__ = ["DenseMatrix", "Ratings", "RatingsDataModule", "TripleLoader", "Triples"]
