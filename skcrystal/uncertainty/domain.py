"""The applicability domain: how far a crystal lies from the training crystals."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_array, check_is_fitted


class LatentDistance(BaseEstimator):
    """Distance of crystal vectors to their ``n_neighbors`` nearest training vectors,
    in units of the training crystals' own such distance.

    Fitted on the embeddings of the training crystals (``regressor.embed(X_train)``),
    :meth:`score` is the mean Euclidean distance of a crystal's embedding to its
    ``n_neighbors`` nearest training embeddings, divided by the median of the same
    distance over the training crystals (each one's neighbours taken among the *other*
    training crystals). A score near 1 means "as close to the training set as a typical
    training crystal"; crystals unlike any seen in training score well above 1.

    Parameters
    ----------
    n_neighbors : int, default=5

    Attributes
    ----------
    embeddings_ : ndarray of shape (n_training_crystals, width), float32
    neighbors_ : sklearn.neighbors.NearestNeighbors
    scale_ : float
        The median leave-one-out distance of the training embeddings.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> domain = LatentDistance(n_neighbors=3).fit(rng.normal(size=(200, 4)))
    >>> near, far = domain.score(np.array([[0.0, 0, 0, 0], [8.0, 8, 8, 8]]))
    >>> bool(near < 1.5 < 5 < far)
    True
    """

    def __init__(self, n_neighbors: int = 5) -> None:
        self.n_neighbors = n_neighbors

    def fit(self, embeddings: np.ndarray, y: None = None):
        """Remember the training embeddings, shape (n_crystals, width)."""
        self.embeddings_ = check_array(embeddings, dtype=np.float32)
        k = self.n_neighbors
        if not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {k!r}")
        if len(self.embeddings_) <= k:
            raise ValueError(
                f"LatentDistance(n_neighbors={k}) needs more than {k} training crystals, "
                f"got {len(self.embeddings_)}"
            )
        self.neighbors_ = NearestNeighbors(n_neighbors=k).fit(self.embeddings_)
        distances, _ = self.neighbors_.kneighbors()  # each crystal's k others
        self.scale_ = float(np.median(distances.mean(axis=1)))
        if self.scale_ == 0:
            raise ValueError(
                f"most training embeddings have {k} identical copies, so distances have no "
                "scale; remove duplicate crystals or raise n_neighbors"
            )
        return self

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """The score of each row of ``embeddings`` (see the class docstring)."""
        check_is_fitted(self, "neighbors_")
        embeddings = check_array(embeddings, dtype=np.float32)
        distances, _ = self.neighbors_.kneighbors(embeddings)
        return distances.mean(axis=1) / self.scale_
