"""scikit-learn's ``n_jobs=-1`` through nbray's joblib backend runs on the cluster's
workers (not in the kernel, not in loky's processes) and gives the same answer."""

from __future__ import annotations

import os
from typing import Any

import pytest

import nbray

pytest.importorskip("sklearn")


def test_grid_search_runs_on_the_cluster(cluster: nbray.ClusterContext) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.tree import DecisionTreeClassifier

    from nbray.util.joblib import register_nbray

    X, y = load_iris(return_X_y=True)
    grid = {"max_depth": [1, 2, 3, None], "min_samples_leaf": [1, 5]}
    plain = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3).fit(X, y)

    register_nbray()
    with joblib.parallel_backend("nbray"):
        assert joblib.effective_n_jobs(-1) == 2  # the cluster's CPUs
        search = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3, n_jobs=-1)
        search.fit(X, y)
        pids: list[Any] = joblib.Parallel(n_jobs=-1)(joblib.delayed(os.getpid)() for _ in range(20))
    assert search.best_params_ == plain.best_params_
    assert search.best_score_ == pytest.approx(plain.best_score_)
    assert os.getpid() not in pids and 1 <= len(set(pids)) <= 2
