"""kdkit: re-run the knowledge-distillation papers in miniature, on a laptop CPU.

Modules (one concern each):

* :mod:`kdkit.data` - data sets as in-memory tensors (MNIST-1D offline; torchvision sets online)
* :mod:`kdkit.models` - small MLPs, CNNs and ResNets; feature capture through hooks
* :mod:`kdkit.losses` - the distillation losses as pure functions of tensors
* :mod:`kdkit.objectives` - a loss bound to the fields of a mini-batch
* :mod:`kdkit.train` - the one training loop, evaluation, cached teacher logits
* :mod:`kdkit.checkpoints` - load-or-train models keyed by their configuration
* :mod:`kdkit.viz` / :mod:`kdkit.widgets` - plots and the interactive experiment panel
* :mod:`kdkit.experiments` - the runs each notebook shows and the tests check

Importing kdkit has no side effects: it does not seed, download, write files or touch
matplotlib's settings.
"""
__version__ = "0.1.0"
