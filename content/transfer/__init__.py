"""Import from a folder or a mounted drive (verified, same content skipped, refusals said) and export of
the library to one with a checksum list, so one box can seed another."""

from .checksums import ChecksumError, read_sums, sha256_file
from .exporter import ExportReport, export_library
from .importer import ImportReport, import_folder

__all__ = [
    "ChecksumError",
    "ExportReport",
    "ImportReport",
    "export_library",
    "import_folder",
    "read_sums",
    "sha256_file",
]
