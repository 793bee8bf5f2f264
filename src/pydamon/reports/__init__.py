"""Reports on record files: access, heatmap, wss, nr_regions, raw.

Each report is a pure function from :class:`pydamon.records.Record` objects
to text (or an image file), so the command line and tests share them.
"""
