"""`winnow review OUT`: a local web app over a run's flagged samples and its audit sample (FastAPI on uvicorn).

    GET  /                      the app (app.html: filters, cards, detail pane, map, keyboard shortcuts)
    GET  /api/meta              classes, reasons, decisions, review states, counts, the audit sample's
                                progress, the map's metadata
    GET  /api/samples           flagged samples (or, with audit=1, the audit sample's), filtered (reason,
                                label, decision, state, score range), sorted by score (the audit sample:
                                by path), paged
    GET  /api/samples/{id}      one sample: scores, neighbours (the run's kNN graph), duplicate group
    GET  /api/image/{id}        its image, read through the run's source reader (a PNG thumbnail)
    GET  /api/map               the embedding map's points (RUN/map.parquet)
    POST /api/reviews           review actions on listed samples, or on every sample a filter selects

Safety. Only samples of the run are served: an image is looked up by sample id in the run's
samples table and read through its source's reader, so no path in a request is ever opened.
The server binds 127.0.0.1 unless told otherwise, and any other bind needs a token, which
every request must then carry. State-changing requests always need the token (the page has
it; another site cannot read it, and the custom header makes a cross-site POST fail its
preflight). A POST names a request id: retrying it writes nothing new (idempotent). Every
POST adds its own part file to OUT/reviews/, so two reviewers at once lose nothing.

The audit sample (manifest column AUDIT, when the run wrote it) is a random sample of the usable
rows that a person checks row by row, flagged or not, so that the next run can estimate the share
of wrong labels from it. Its list is ordered by path, not by score: the person checking it should
not be led by the model's opinion. A run without the column has an empty audit sample.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from winnow.catalogs import classes_of, open_reader
from winnow.catalogs import schemas as S
from winnow.pipeline.files import load_knn_graph
from winnow.pipeline.layout import RunLayout
from winnow.pipeline.review.apply import PENDING, REVIEWED, STALE
from winnow.pipeline.review.projection import read_map
from winnow.pipeline.review.store import (
    REVIEW_DECISIONS,
    REVIEWED_AT,
    REVIEWER,
    ReviewError,
    ReviewReader,
    folder_signature,
    reviews_dir,
    write_reviews,
)

LOG = logging.getLogger(__name__)

PAGE_MAX = 200  # most samples one page request returns
IMAGE_PX = 256  # longest side of a served image
NEIGHBOURS = 8
TOKEN_HEADER = "x-winnow-token"
SCORE = S.LABEL_QUALITY  # the score the listing filters and sorts by (low: the label is doubtful)


class TokenRequired(ValueError):
    """A bind other than the loopback interface without a token."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """TokenRequired unless `host` is a loopback address or a token is given."""
    if not is_loopback(host) and not token:
        raise TokenRequired(f"--host {host!r} is reachable from other machines: give --token (or "
                            f"WINNOW_REVIEW_TOKEN) so that only people who have it can see and change reviews")


@dataclass(frozen=True)
class Query:
    """A filter over the flagged samples, or over the audit sample's (every field optional)."""

    reason: str | None = None  # a reason code the sample has
    label: str | None = None  # its given label
    decision: str | None = None  # its decision now (the reviewer's when reviewed)
    state: str | None = None  # pending | reviewed | stale
    min_score: float | None = None  # label_quality at least
    max_score: float | None = None  # label_quality at most
    sort: str | None = None  # score (lowest first) | -score (highest first) | path; None: score, or path with audit
    audit: bool = False  # the audit sample's rows (flagged or not) instead of the flagged rows

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Query:
        def text(name):
            value = params.get(name)
            return value if value not in (None, "") else None

        def number(name):
            value = text(name)
            if value is None:
                return None
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ReviewError(f"{name} must be a number, got {value!r}") from None

        sort = text("sort")
        if sort is not None and sort not in ("score", "-score", "path"):
            raise ReviewError(f"sort must be score, -score or path, got {sort!r}")
        audit = text("audit")
        if audit is not None and str(audit).lower() not in ("1", "true", "0", "false"):
            raise ReviewError(f"audit must be 1, true, 0 or false, got {audit!r}")
        audit_on = audit is not None and str(audit).lower() in ("1", "true")
        state = text("state")
        if state is not None and state not in (PENDING, REVIEWED, STALE):
            raise ReviewError(f"state must be pending, reviewed or stale, got {state!r}")
        return cls(reason=text("reason"), label=text("label"), decision=text("decision"), state=state,
                   min_score=number("min_score"), max_score=number("max_score"), sort=sort,
                   audit=audit_on)


class ReviewData:
    """One run's flagged samples and audit sample, what the app needs to show them, and the live reviews."""

    def __init__(self, out: str | Path) -> None:
        from winnow.pipeline.report import resolve_run

        self.out = Path(out).expanduser().resolve()
        self.run = resolve_run(self.out)
        if self.run.parent.name == "runs":  # OUT/runs/<id>: reviews live in OUT/reviews/
            self.out = self.run.parent.parent
        self.reviews_folder = reviews_dir(self.out)
        layout = RunLayout(self.run)
        manifest = pl.read_parquet(layout.manifest)
        samples = layout.work.samples.table
        self.classes: list[str] = classes_of(samples) if samples.is_file() else sorted(manifest[S.LABEL].unique())
        self.reader = open_reader(samples) if samples.is_file() else None
        self._locators: dict[str, str] = {}
        if samples.is_file():
            table = pl.read_parquet(samples, columns=[S.SAMPLE_ID, S.LOCATOR])
            self._locators = dict(zip(table[S.SAMPLE_ID].to_list(), table[S.LOCATOR].to_list(), strict=True))
        self.score_cols = [c for c in manifest.columns if S.is_score_column(c) or c == "outlier_score"]
        flagged_mask = manifest[S.REASONS].list.len() > 0
        # An older run has no audit column: its audit sample is empty.
        audit_mask = (manifest[S.AUDIT].cast(pl.Boolean).fill_null(False) if S.AUDIT in manifest.columns
                      else pl.Series(S.AUDIT, [False] * manifest.height, dtype=pl.Boolean))
        self.manifest = manifest
        # The run's own review columns are superseded by the live folder; keep the run's decision.
        own = [c for c in ("review_state", REVIEWER, REVIEWED_AT) if c in manifest.columns]
        self.rows = manifest.with_columns(flagged_mask.alias("_flagged"), audit_mask.alias("_audit")).filter(
            pl.col("_flagged") | pl.col("_audit")).drop(own).with_columns(
            pl.col(S.REASONS).list.set_difference(["reviewed", "review_stale"]).alias("_reasons"))
        self._row_of = {sid: i for i, sid in enumerate(manifest[S.SAMPLE_ID].to_list())}
        self.map_points, self.map_meta = (read_map(layout.map) if layout.map.is_file() else (None, {}))
        self._graph = None
        self._graph_ids: list[str] | None = None
        self._row_in_graph: dict[str, int] = {}
        work = layout.work
        if work.knn.graph.is_file() and work.embed.table.is_file():
            embed = pl.read_parquet(work.embed.table, columns=[S.SAMPLE_ID, S.ROW]).filter(pl.col(S.ROW) >= 0)
            by_row = embed.sort(S.ROW)
            graph = load_knn_graph(work.knn.graph)
            if by_row.height == graph.indices.shape[0]:
                self._graph, self._graph_ids = graph, by_row[S.SAMPLE_ID].to_list()
                self._row_in_graph = dict(zip(by_row[S.SAMPLE_ID].to_list(), by_row[S.ROW].to_list(), strict=True))
        self._lock = threading.Lock()
        self._cache_key: tuple | None = None
        self._view: pl.DataFrame | None = None
        self._reviews: pl.DataFrame | None = None
        self._reader = ReviewReader(self.reviews_folder)
        self._map_json: bytes | None = None

    # --- the live view: flagged and audit rows joined with the newest reviews -------------------
    def view(self) -> pl.DataFrame:
        """The flagged and audit rows (`_flagged`, `_audit`) with `state`, `now_decision`, `now_label`,
        `reviewer` from OUT/reviews/."""
        key = folder_signature(self.reviews_folder)
        with self._lock:
            if key != self._cache_key or self._view is None:
                reviews = self._reader.read()
                self._reviews = reviews
                joined = self.rows.join(
                    reviews.select(S.SAMPLE_ID, pl.col(S.CONTENT_HASH).alias("_r_hash"),
                                   pl.col(S.DECISION).alias("_r_decision"), pl.col(S.LABEL).alias("_r_label"),
                                   REVIEWER, pl.col(REVIEWED_AT).dt.strftime("%Y-%m-%dT%H:%M:%SZ")),
                    on=S.SAMPLE_ID, how="left", maintain_order="left")
                has = pl.col("_r_decision").is_not_null()
                same = has & (pl.col("_r_hash") == pl.col(S.CONTENT_HASH))
                self._view = joined.with_columns(
                    pl.when(same).then(pl.lit(REVIEWED)).when(has).then(pl.lit(STALE))
                    .otherwise(pl.lit(PENDING)).alias("state"),
                    pl.when(same).then(pl.col("_r_decision")).otherwise(pl.col(S.DECISION)).alias("now_decision"),
                    pl.when(same & (pl.col("_r_decision") == "relabel")).then(pl.col("_r_label"))
                    .when(same & (pl.col("_r_decision") == "keep")).then(pl.col(S.LABEL))
                    .when(same).then(pl.lit(None, dtype=pl.String))
                    .otherwise(pl.col(S.FINAL_LABEL)).alias("now_label"),
                )
                self._cache_key = key
            return self._view

    def select(self, query: Query) -> pl.DataFrame:
        """The flagged rows (with query.audit: the audit rows) `query` selects, in its order."""
        frame = self.view().filter(pl.col("_audit" if query.audit else "_flagged"))
        if query.reason:
            frame = frame.filter(pl.col("_reasons").list.contains(query.reason))
        if query.label:
            frame = frame.filter(pl.col(S.LABEL) == query.label)
        if query.decision:
            frame = frame.filter(pl.col("now_decision") == query.decision)
        if query.state:
            frame = frame.filter(pl.col("state") == query.state)
        if query.min_score is not None:
            frame = frame.filter(pl.col(SCORE) >= query.min_score)
        if query.max_score is not None:
            frame = frame.filter(pl.col(SCORE) <= query.max_score)
        sort = query.sort or ("path" if query.audit else "score")
        if sort == "path":
            return frame.sort([S.PATH, S.SAMPLE_ID])
        return frame.sort([SCORE, S.SAMPLE_ID], descending=[sort == "-score", False], nulls_last=True)

    def page(self, query: Query, *, page: int = 1, size: int = 50) -> dict[str, Any]:
        if not 1 <= size <= PAGE_MAX:
            raise ReviewError(f"size must be 1..{PAGE_MAX}, got {size}")
        if page < 1:
            raise ReviewError(f"page must be 1 or more, got {page}")
        frame = self.select(query)
        rows = frame.slice((page - 1) * size, size)
        return {"total": frame.height, "page": page, "size": size, "items": [self._item(r) for r in
                                                                              rows.iter_rows(named=True)]}

    def _item(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "sample_id": row[S.SAMPLE_ID], "path": row[S.PATH], "label": row[S.LABEL],
            "suggested_label": row[S.SUGGESTED_LABEL], "decision": row[S.DECISION],
            "now_decision": row["now_decision"], "now_label": row["now_label"], "final_label": row[S.FINAL_LABEL],
            "reasons": [r for r in row[S.REASONS] if r not in ("reviewed", "review_stale")],
            "score": _num(row[SCORE]), "state": row["state"], "reviewer": row[REVIEWER],
            "reviewed_at": row[REVIEWED_AT], "duplicate_of": row[S.DUPLICATE_OF], "audit": row["_audit"],
        }

    def detail(self, sample_id: str) -> dict[str, Any] | None:
        i = self._row_of.get(sample_id)
        if i is None:
            return None
        row = self.manifest.row(i, named=True)
        live = self.view().filter(pl.col(S.SAMPLE_ID) == sample_id)
        item = self._item(live.row(0, named=True)) if live.height else {
            "sample_id": sample_id, "path": row[S.PATH], "label": row[S.LABEL],
            "suggested_label": row[S.SUGGESTED_LABEL], "decision": row[S.DECISION], "now_decision": row[S.DECISION],
            "now_label": row[S.FINAL_LABEL], "final_label": row[S.FINAL_LABEL], "reasons": [],
            "score": _num(row[SCORE]), "state": None, "reviewer": None, "reviewed_at": None,
            "duplicate_of": row[S.DUPLICATE_OF], "audit": False}
        item["scores"] = {c: _num(row[c]) for c in self.score_cols if c in row}
        item["neighbours"] = self.neighbours(sample_id)
        item["duplicates"] = self.duplicate_group(sample_id, row[S.DUPLICATE_OF])
        return item

    def neighbours(self, sample_id: str, k: int = NEIGHBOURS) -> list[dict[str, Any]]:
        row = self._row_in_graph.get(sample_id)
        if self._graph is None or row is None:
            return []
        out = []
        for j, sim in zip(self._graph.indices[row], self._graph.similarities[row], strict=True):
            if j < 0 or j == row:
                continue
            sid = self._graph_ids[int(j)]
            m = self.manifest.row(self._row_of[sid], named=True)
            out.append({"sample_id": sid, "label": m[S.LABEL], "similarity": round(float(sim), 4),
                        "decision": m[S.DECISION]})
            if len(out) == k:
                break
        return out

    def duplicate_group(self, sample_id: str, duplicate_of: str | None) -> list[dict[str, Any]]:
        keeper = duplicate_of or sample_id
        group = self.manifest.filter((pl.col(S.DUPLICATE_OF) == keeper) | (pl.col(S.SAMPLE_ID) == keeper))
        if group.height <= 1:
            return []
        return [{"sample_id": r[S.SAMPLE_ID], "label": r[S.LABEL], "decision": r[S.DECISION],
                 "keeper": r[S.SAMPLE_ID] == keeper} for r in group.head(50).iter_rows(named=True)]

    def image_png(self, sample_id: str) -> bytes | None:
        """The sample's image as a PNG (longest side IMAGE_PX), read through the run's source; None
        when the id is not a sample of this run or its content no longer decodes."""
        from PIL import Image

        from winnow.embeddings import load_image
        from winnow.embeddings.images import to_rgb

        locator = self._locators.get(sample_id)
        if locator is None or self.reader is None:
            return None
        img, _reason = load_image(locator, reader=self.reader)
        if img is None:
            return None
        img = to_rgb(img)
        longest = max(img.size)
        if longest < IMAGE_PX:
            factor = max(1, IMAGE_PX // longest)
            img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
        else:
            img.thumbnail((IMAGE_PX, IMAGE_PX), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    def meta(self) -> dict[str, Any]:
        rows = self.view()
        view = rows.filter(pl.col("_flagged"))
        reasons = (view.select(pl.col("_reasons").explode()).drop_nulls()["_reasons"].value_counts(sort=True)
                   .rename({"_reasons": S.REASONS}))
        states = view["state"].value_counts()
        score = view[SCORE].drop_nulls()
        return {
            "run": self.run.name, "out": str(self.out), "classes": self.classes, "flagged": view.height,
            "samples": self.manifest.height,
            "reasons": dict(zip(reasons[S.REASONS].to_list(), reasons["count"].to_list(), strict=True)),
            "states": {s: int(c) for s, c in zip(states["state"].to_list(), states["count"].to_list(), strict=True)},
            "decisions": list(S.DECISIONS), "score": SCORE,
            "score_range": [_num(score.min()), _num(score.max())] if score.len() else [None, None],
            "map": self.map_meta if self.map_points is not None else None,
            "audit": _audit_counts(rows.filter(pl.col("_audit"))),
        }

    def map_json(self) -> bytes:
        """map_payload as JSON, built once (the map does not change while the app runs)."""
        if self._map_json is None:
            self._map_json = json.dumps(self.map_payload(), separators=(",", ":")).encode()
        return self._map_json

    def map_payload(self) -> dict[str, Any]:
        if self.map_points is None:
            return {"points": [], "classes": self.classes, "meta": None}
        class_index = {c: i for i, c in enumerate(self.classes)}
        labels = self.manifest[S.LABEL].to_list()
        pts = []
        for sid, x, y, flag in self.map_points.select(S.SAMPLE_ID, "x", "y", "flagged").iter_rows():
            i = self._row_of.get(sid)
            pts.append([sid, round(float(x), 4), round(float(y), 4),
                        class_index.get(labels[i], -1) if i is not None else -1, bool(flag)])
        return {"points": pts, "classes": self.classes, "meta": self.map_meta}

    # --- actions ----------------------------------------------------------------------------
    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        """Write one request's review actions (a part file); returns what was written.

        body: {"reviewer", "request_id", "actions": [{"sample_id", "decision", "label"?, "note"?}]}
        or, for a bulk action on a filter, {"reviewer", "request_id", "decision", "label"?, "note"?,
        "filter": {Query params}} (every flagged sample the filter selects; with audit=1, every audit
        sample) or "sample_ids": [...]. Any sample of the run may be reviewed: the detail pane and the
        map open unflagged ones too, and a run applies a review to any row.
        """
        if not isinstance(body, dict):
            raise ReviewError(f"a review request is a JSON object, got {type(body).__name__}")
        reviewer = body.get("reviewer") or "reviewer"
        if "actions" in body:
            actions = body["actions"]
            if not isinstance(actions, list):
                raise ReviewError(f"actions must be a list, got {actions!r}")
        else:
            decision = body.get("decision")
            if "filter" in body:
                ids = self.select(Query.from_params(body["filter"] or {}))[S.SAMPLE_ID].to_list()
            elif isinstance(body.get("sample_ids"), list):
                ids = body["sample_ids"]
            else:
                raise ReviewError("a review request needs actions, sample_ids or a filter")
            actions = [{"sample_id": sid, "decision": decision, "label": body.get("label"),
                        "note": body.get("note")} for sid in ids]
        rows = []
        for action in actions:
            if not isinstance(action, dict):
                raise ReviewError(f"a review action is an object, got {action!r}")
            sid = action.get("sample_id")
            i = self._row_of.get(sid) if isinstance(sid, str) else None
            if i is None:
                raise ReviewError(f"sample {sid!r} is not a sample of run {self.run.name}")
            m = self.manifest.row(i, named=True)
            if m[S.CONTENT_HASH] is None:
                raise ReviewError(f"sample {sid!r} could not be read by the run ({m[S.REASONS]}); it cannot be reviewed")
            decision = action.get("decision")
            if decision not in REVIEW_DECISIONS:
                raise ReviewError(f"decision {decision!r} for sample {sid!r} is not one of {REVIEW_DECISIONS}")
            label = action.get("label")
            if decision == "relabel":
                if label not in self.classes:
                    raise ReviewError(f"label {label!r} for sample {sid!r} is not a class of this dataset")
                if label == m[S.LABEL]:
                    decision = "keep"
            if decision == "keep":
                label = m[S.LABEL]
            elif decision == "drop":
                label = None
            rows.append({"sample_id": sid, "content_hash": m[S.CONTENT_HASH], "decision": decision,
                         "label": label, "note": action.get("note")})
        if not rows:
            return {"written": 0, "file": None, "new": False}
        path, new = write_reviews(self.reviews_folder, rows, reviewer=str(reviewer), request_id=body.get("request_id"))
        return {"written": len(rows) if new else 0, "file": path.name, "new": new, "actions": len(rows)}


def _audit_counts(audit: pl.DataFrame) -> dict[str, int]:
    """The audit sample's progress: its size, the rows whose label a person checked (a current keep
    or relabel: what the next run counts, pipeline/review/apply.py `audit_rows`), of those the ones
    relabelled to another class (`wrong`), and the rows dropped (not counted: a drop says nothing
    about the label)."""
    reviewed = audit.filter(pl.col("state") == REVIEWED)
    dropped = reviewed.filter(pl.col("now_decision") == "drop")
    checked = reviewed.filter(pl.col("now_decision") != "drop")
    wrong = checked.filter((pl.col("now_decision") == "relabel") & (pl.col("now_label") != pl.col(S.LABEL)))
    return {"size": audit.height, "reviewed": checked.height, "wrong": wrong.height, "dropped": dropped.height}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if not np.isfinite(value) else round(value, 4)


def _host_name(header: str) -> str:
    """The name of a Host header, without its port ("[::1]:8765" -> "::1")."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _page_html(token: str) -> str:
    text = resources.files("winnow.pipeline.review").joinpath("app.html").read_text(encoding="utf-8")
    return text.replace("__WINNOW_TOKEN__", json.dumps(token))


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def create_app(out: str | Path, *, token: str, token_for_reads: bool = False,
               allowed_hosts: tuple[str, ...] | None = None):
    """The FastAPI app over OUT's latest run (or a run folder). `token`: required on every POST,
    and on every request when `token_for_reads` (a bind other than loopback). `allowed_hosts`:
    the names a request's Host header may give (None: any); a loopback bind allows only
    LOOPBACK_HOSTS, so a page that rebinds its own name to 127.0.0.1 cannot read the app."""
    data = ReviewData(out)
    app = FastAPI(title="Winnow review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.data = data

    def given_token(request: Request) -> str:
        return request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or \
            request.cookies.get("winnow_token") or ""

    def authorised(request: Request) -> bool:
        return hmac.compare_digest(given_token(request).encode(), token.encode())

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if allowed_hosts is not None and _host_name(request.headers.get("host", "")) not in allowed_hosts:
            return JSONResponse({"error": "unexpected Host header"}, status_code=403)
        needs = request.method not in ("GET", "HEAD") or token_for_reads
        if needs and not authorised(request):
            return JSONResponse({"error": "a valid token is required (header X-Winnow-Token or ?token=)"},
                                status_code=403)
        response = await call_next(request)
        if token_for_reads and request.query_params.get("token"):
            response.set_cookie("winnow_token", token, httponly=True, samesite="strict")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.exception_handler(ReviewError)
    async def review_error(_request: Request, exc: ReviewError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(_page_html(token), headers={"Cache-Control": "no-store"})

    @app.get("/api/meta")
    def meta() -> dict[str, Any]:
        return data.meta()

    @app.get("/api/samples")
    def samples(request: Request) -> dict[str, Any]:
        params = dict(request.query_params)
        try:
            page, size = int(params.get("page", 1)), int(params.get("size", 50))
        except ValueError:
            raise ReviewError(f"page and size must be integers, got {params.get('page')!r}, "
                              f"{params.get('size')!r}") from None
        return data.page(Query.from_params(params), page=page, size=size)

    @app.get("/api/samples/{sample_id}")
    def sample(sample_id: str) -> dict[str, Any]:
        found = data.detail(sample_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no sample {sample_id!r} in this run")
        return found

    @app.get("/api/image/{sample_id}")
    def image(sample_id: str) -> Response:
        png = data.image_png(sample_id)
        if png is None:
            raise HTTPException(status_code=404, detail="not an image of this dataset")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    @app.get("/api/map")
    def map_points() -> Response:
        return Response(data.map_json(), media_type="application/json")

    @app.post("/api/reviews")
    async def reviews(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ReviewError("the request body is not JSON") from None
        return data.review(body)

    return app


def serve(out: str | Path, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          log_level: str = "warning") -> None:
    """Run the app with uvicorn until interrupted (`winnow review`)."""
    import secrets

    import uvicorn

    check_bind(host, token)
    token = token or secrets.token_urlsafe(24)
    local = is_loopback(host)
    app = create_app(out, token=token, token_for_reads=not local,
                     allowed_hosts=tuple(dict.fromkeys((*LOOPBACK_HOSTS, host))) if local else None)
    LOG.info("review app for %s on http://%s:%d/", app.state.data.run, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
