"""Soiling segmentation and tile coverage: segmentation families and a tile head behind one factory."""

from models.segmenter.families import FAMILIES
from models.segmenter.model import MaskGate, Segmenter, create_segmenter
from models.segmenter.spec import NUM_CLASSES, SegmenterSpec
from models.segmenter.tiles import frame_coverage, tile_coverage

__all__ = [
    "FAMILIES",
    "NUM_CLASSES",
    "MaskGate",
    "Segmenter",
    "SegmenterSpec",
    "create_segmenter",
    "frame_coverage",
    "tile_coverage",
]
