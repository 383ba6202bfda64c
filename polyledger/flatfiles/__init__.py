"""The flat-file route (`run --source flatfiles`): the provider's day files read into day
units (`minute_files`, `day_files`: staged, filtered to the universe), then transposed
into the same ticker x month (or year) files and units the REST route fills.

`source.py` the bucket; `job.py` what a run's workers share; `stage.py` a day unit;
`transpose.py` ticker units built from staged days; `units.py` the worker's entry;
`prepare.py` a run's day units planned (and re-staged for a grown universe); `etags.py`
replaced day files found; `reconcile.py` REST and flat-file bars compared.
"""
