"""Datasets for the backprop oracle: load and verify, standardize, schedule mini-batches.

Knows nothing of models: everything here is NumPy arrays in, NumPy arrays out.
"""

from .download import cache_root
from .errors import DataError
from .occupancy import (
    ARCHIVE_SHA256,
    ARCHIVE_URL,
    EXPECTED_ROWS,
    FEATURES,
    MEMBER_SHA256,
    SPLITS,
    TARGET,
    Split,
    cache_dir,
    dataset_info,
    download_occupancy,
    extract_members,
    file_sha256,
    load_occupancy,
    load_split,
    occupancy_files,
    parse_occupancy_bytes,
    parse_occupancy_file,
)
from .schedule import BatchSchedule, Step, make_schedule
from .standardize import Standardizer, standardize_splits, standardized_occupancy
from .synthetic import make_synthetic

__all__ = [
    "ARCHIVE_SHA256",
    "ARCHIVE_URL",
    "EXPECTED_ROWS",
    "FEATURES",
    "MEMBER_SHA256",
    "SPLITS",
    "TARGET",
    "BatchSchedule",
    "DataError",
    "Split",
    "Standardizer",
    "Step",
    "cache_dir",
    "cache_root",
    "dataset_info",
    "download_occupancy",
    "extract_members",
    "file_sha256",
    "load_occupancy",
    "load_split",
    "make_schedule",
    "make_synthetic",
    "occupancy_files",
    "parse_occupancy_bytes",
    "parse_occupancy_file",
    "standardize_splits",
    "standardized_occupancy",
]
