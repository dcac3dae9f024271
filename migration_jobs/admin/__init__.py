"""The admin, one module per area; importing each registers its ModelAdmins on the default site."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
