"""Human review that persists: OUT/reviews/, reviews applied by every run, the review app.

    store.py       OUT/reviews/ part files: REVIEW_SCHEMA, read_reviews (newest per sample wins), write_reviews
    apply.py       apply_reviews: the curate stage's table with the reviewers' decisions (reason `reviewed`,
                   or `review_stale` when the content changed) and the manifest's review columns
    projection.py  the embedding map: a 2-D projection of a sample of the embeddings, once per run
    app.py         `winnow review OUT`: the local web app (Starlette/FastAPI on uvicorn)

The library part (store, apply, projection) is imported by the stages; app.py only by the
command (it imports FastAPI).
"""

from winnow.pipeline.review.apply import (
    PENDING,
    REVIEW_STATE,
    REVIEW_STATES,
    REVIEWED,
    STALE,
    apply_reviews,
    newly_reviewed,
    review_counts,
)
from winnow.pipeline.review.store import (
    REVIEW_SCHEMA,
    REVIEWS,
    ReviewError,
    read_review_file,
    read_reviews,
    reviews_dir,
    reviews_key,
    write_reviews,
)

__all__ = [
    "PENDING", "REVIEWED", "REVIEWS", "REVIEW_SCHEMA", "REVIEW_STATE", "REVIEW_STATES", "STALE", "ReviewError",
    "apply_reviews", "newly_reviewed", "read_review_file", "read_reviews", "review_counts", "reviews_dir",
    "reviews_key", "write_reviews",
]
