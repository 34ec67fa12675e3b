"""The admin console (/admin/): every page server-rendered with its JSON twin, every change behind the admin's
login (``auth.admin_required``) and by POST only. Each view calls the library functions the CLI calls
(appliance.fill, content.acquire, content.updates, appliance.config, appliance.models); what takes long runs
either as a download job (the downloader's process does the work) or as a console task (appliance.tasks: the
`almanac` command itself, in its own process).

One module per page: library (books, catalog, packs, drives), jobs (downloads and tasks), maps, models,
settings, status; the shared helpers are in common.py.
"""
