"""The experiments each notebook shows, as functions the notebooks, tests and CLI share.

* :mod:`kdkit.experiments.runs` - results of runs over seeds, mean ± std, claim verdicts
* :mod:`kdkit.experiments.mnist1d` - the standard MNIST-1D teacher and student recipes
* :mod:`kdkit.experiments.start_here` - notebook 00: one teacher, one student, one KD run
* :mod:`kdkit.experiments.ba_caruana` - notebook 01: shallow students mimicking logits, transfer sets
* :mod:`kdkit.experiments.hinton` - notebook 02: temperature, soft targets, small data, an omitted class
* :mod:`kdkit.experiments.tfkd` - notebook 03: reversed, defective and virtual teachers; KD as label smoothing

Each module's ``reproduce(seeds)`` re-runs its notebook's claims (``python -m kdkit``).
"""
