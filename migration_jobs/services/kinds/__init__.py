"""The run kinds, one module each: importing this package registers every one of them.

Each module declares its kind (`RunKind`, migration_jobs/run_kinds.py) and does the kind's own
work; the lifecycle every kind shares is services/runs.py. The app imports this package once it is
ready (apps.py), so that every part that asks the registry finds all the kinds; a new kind is a
new module here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
