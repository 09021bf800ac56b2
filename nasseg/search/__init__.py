"""The search: an Optuna study that co-optimises short-schedule mIoU and latency on a target."""

from nasseg.search.results import StudyResults, study_results
from nasseg.search.run import run_search
from nasseg.search.spec import StudySpec, load_study_file
from nasseg.search.study import Study, load_study
from nasseg.search.trial import TrialPlan, TrialRecord, evaluate_architecture

__all__ = [
    "Study",
    "StudyResults",
    "StudySpec",
    "TrialPlan",
    "TrialRecord",
    "evaluate_architecture",
    "load_study",
    "load_study_file",
    "run_search",
    "study_results",
]
