"""Importers of real drive tests into the corpus format (see ``docs/learn.md``).

Each reads one source, cleans it while counting every dropped row by reason
(:class:`ImportReport`, also stored in the corpus attribute ``import_report``), and
writes a corpus with reproducible ``random`` and ``spatial`` splits.
"""

from learn.importers._build import (
           ImportReport,
           Measurements,
           SceneSpec,
           SplitConfig,
           write_measurements,
)
from learn.importers.drive_test import export_drive_test, import_drive_test
from learn.importers.powder import import_powder
from learn.importers.rome import import_rome_crop, import_rome_nbiot

__all__ = ["ImportReport", "Measurements", "SceneSpec", "SplitConfig", "write_measurements",
           "import_rome_nbiot", "import_rome_crop", "import_powder", "import_drive_test", "export_drive_test"]
