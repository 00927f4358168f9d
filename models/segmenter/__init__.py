"""Soiling segmentation and tile coverage."""

from models.segmenter.model import NUM_CLASSES, Segmenter
from models.segmenter.tiles import frame_coverage, tile_coverage

__all__ = ["NUM_CLASSES", "Segmenter", "frame_coverage", "tile_coverage"]
