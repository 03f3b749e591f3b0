"""The trial's data export: one CSV per dataset (long format), the data dictionary generated
from the same definitions, de-identified by default, bundled with a manifest of row counts and
SHA-256 hashes.

`datasets.py` says what each dataset holds, column by column (`columns.py`: how a column is
described, read and written, and the options of one export); `dictionary.py` writes the
dictionary from it; `deidentify.py` the ages, date shifts and study days; `safe_csv.py` the
cells (CSV injection neutralised); `bundle.py` writes the files and the manifest and records
the export.
"""
