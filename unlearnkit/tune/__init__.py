"""Fair tuning (``unlearnkit tune``, docs/tuning.md): every method the same trials and budget,
on data the reported table never uses, each trial an ordinary run of the engine. The face keeps
the names ``unlearnkit.tune`` had before 0.3."""

from unlearnkit.tune.objective import Objective, objective_names, resolve_objective
from unlearnkit.tune.sealed_split import SealedSplit, TestSplitAccessError, UnseenAsTest, probe_metrics, stand_in
from unlearnkit.tune.studies import study_storage
from unlearnkit.tune.trials import TrialFailed, TrialTimeout, TuningRunner
from unlearnkit.tune.tuner import DEFAULT_EPOCH_CAP, DEFAULT_TUNE_SEEDS, MethodResult, Tuner, TuneReport

__all__ = [
    "DEFAULT_EPOCH_CAP",
    "DEFAULT_TUNE_SEEDS",
    "MethodResult",
    "Objective",
    "SealedSplit",
    "TestSplitAccessError",
    "TrialFailed",
    "TrialTimeout",
    "TuneReport",
    "Tuner",
    "TuningRunner",
    "UnseenAsTest",
    "objective_names",
    "probe_metrics",
    "resolve_objective",
    "stand_in",
    "study_storage",
]
