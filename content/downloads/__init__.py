"""The one downloader: resumable, verified downloads of ZIMs, map archives and models, kept in SQLite.

``Downloader`` runs the jobs; ``installers`` say how each kind of file is checked and moved in;
``provenance`` records where each installed file came from; ``progress`` shows jobs in a terminal."""

from .box import open_downloader
from .downloader import Downloader, DownloadError, disk_free, human_bytes
from .installers import FileInstaller, Refused, ZimInstaller, check_map_archive
from .jobs import Job, JobError, JobStore
from .metalink import Metalink, MetalinkError, parse_metalink, write_metalink
from .provenance import Installed, Provenance

__all__ = [
    "Downloader",
    "DownloadError",
    "FileInstaller",
    "Installed",
    "Job",
    "JobError",
    "JobStore",
    "Metalink",
    "MetalinkError",
    "Provenance",
    "Refused",
    "ZimInstaller",
    "check_map_archive",
    "disk_free",
    "human_bytes",
    "open_downloader",
    "parse_metalink",
    "write_metalink",
]
