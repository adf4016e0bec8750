"""unlearnkit: benchmark machine-unlearning methods for image classifiers."""

__version__ = "0.1.0"
