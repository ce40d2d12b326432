"""What the UCI Occupancy Detection data set is: where it lives, its digests, its columns.

Also the environment variables that point the loader elsewhere, and the fixes its errors
suggest, which the locating, downloading and parsing modules share.
"""

from __future__ import annotations

ARCHIVE_URL = "https://archive.ics.uci.edu/static/public/357/occupancy+detection.zip"
ARCHIVE_SHA256 = "4ae3f46aa98eedff564a9f6924d1635173e2fd2c816004342a9be93076d3a81a"
ARCHIVE_NAME = "occupancy_detection.zip"

SPLITS: dict[str, str] = {
    "train": "datatraining.txt",
    "test": "datatest.txt",
    "test2": "datatest2.txt",
}
MEMBER_SHA256: dict[str, str] = {
    "datatraining.txt": "b2c4d0ce2b9e4e453c476f7125ef31aeec2d1f5c7f5572d0e80de3df6521ab56",
    "datatest.txt": "1b92c7c1b2838963464fa891a610cf3c5db4becb7189189b29b330107a584c7f",
    "datatest2.txt": "d026d1bd5aeccd4aff4f3b3710d48e40613bd5fc370db7e61bbdcaa50d985095",
}
EXPECTED_ROWS: dict[str, int] = {"train": 8143, "test": 2665, "test2": 9752}

FEATURES: tuple[str, ...] = ("Temperature", "Humidity", "Light", "CO2", "HumidityRatio")
TARGET = "Occupancy"
HEADER: tuple[str, ...] = ("date", *FEATURES, TARGET)
# R's write.csv layout: each data row starts with a quoted row id that the header does not name.
FIELDS_PER_ROW = len(HEADER) + 1

DATA_DIR_ENV = "OCCUPANCY_DATA_DIR"
CACHE_ENV = "BACKPROP_ORACLE_CACHE"

FILE_LIST = ", ".join(SPLITS.values())
DATA_DIR_FIX = (
    f"set {DATA_DIR_ENV} (or pass data_dir) to a folder holding {FILE_LIST} exactly as "
    f"published by UCI, or unset it to download them into the cache"
)
CACHE_FILE_FIX = "delete the file and rerun to download it again"
CACHE_FOLDER_FIX = (
    f"set {CACHE_ENV} to a folder you can write to (the download goes into its 'occupancy' "
    f"subfolder), or set {DATA_DIR_ENV} to a folder that already holds {FILE_LIST}"
)
PARSE_FIX = (
    f"this is not an intact copy of the UCI file: delete it and rerun to download it again, "
    f"or set {DATA_DIR_ENV} to a folder holding intact copies of {FILE_LIST}"
)
