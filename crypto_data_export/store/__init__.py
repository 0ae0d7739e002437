"""The export folder: its layout, file formats, scans, validation, retention,
duplicates and quarantine. Never touches HTTP."""
