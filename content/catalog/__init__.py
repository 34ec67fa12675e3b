"""The Kiwix OPDS catalog (kiwix-serve's own ``/catalog/v2``): entries, languages, categories and
illustrations, fetched over HTTP and cached in SQLite so they can be browsed with no network."""

from .catalog import Catalog, CatalogError, CatalogPage, Category, Entry, Language

__all__ = ["Catalog", "CatalogError", "CatalogPage", "Category", "Entry", "Language"]
