"""What an issue type is: the IssueType interface, the context its finder reads, its findings.

An issue type is one kind of problem a sample can have (an outlier, a leak into the holdout,
a dark image). It declares, in one class:

- `name`: the registry key, and the policy key `on_<name>` that says what is done with it;
- `reasons`: the reason codes it writes into the manifest, each with its meaning (the README's
  and the report's list of codes is built from these);
- `columns`: the manifest columns it adds (name -> dtype, one of COLUMN_DTYPES);
- `default_action`: "drop" or "keep" (flag only) for its flagged samples;
- `find(ctx) -> IssueFindings`: which samples it flags, with which reason, and its columns;
- `sections`: how the report lists each of its reason codes (ReportSection).

`mechanics = "flag"` types are handled generically: curate() calls `find`, and decide()
appends each flagged sample's reason code and drops it when the action is "drop", in registry
order, before label issues and duplicates. A few kinds keep mechanics of their own in
curate() / decide() (label issues relabel, duplicates keep one representative, pruning and
caps meet a target): they are `mechanics = "curate"` entries that declare their reason codes,
columns and sections here, so there is one list, and have no `find`.

Curation is pure arrays: a finder sees only the IssueContext (embeddings, the kNN graph,
labels, hashes, the label detectors' report, ...), never a file or the report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import KnnGraph

LOG = logging.getLogger(__name__)

ACTIONS = ("drop", "keep")
"""What the policy may do with a flagged sample of a "flag" issue type."""

COLUMN_DTYPES = ("float64", "int64", "bool", "string")
"""Types an issue type's manifest column may have (null where a row was not judged)."""

MECHANICS = ("flag", "curate")


class MissingInput(InvalidArray):
    """An issue type asked its context for something this run did not compute."""


@dataclass(frozen=True)
class ReportSection:
    """How the report lists the samples of one reason code (pipeline/report/sections.py draws it)."""

    sort_by: str | None = None  # the column its listing is sorted by; None: the type's first column, else label_quality
    descending: bool = False  # True: the highest value first (a score where high is worse)
    order: str | None = None  # how that order reads on its pages ("farthest first"); None: said from sort_by
    title: str | None = None  # shown before the code in its headings; None: the code alone
    card_columns: tuple[str, ...] = ()  # more columns on its samples' cards; None: its sort column
    listed_first: bool = False  # listed before every other reason (the rest: the most frequent first)


@dataclass(frozen=True)
class IssueFindings:
    """What one issue type found, over the context's M usable (embedded) rows."""

    flags: Mapping[str, np.ndarray]  # reason code -> (M,) bool; a sample may carry several of the type's codes
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)  # manifest column -> (M,) values (NaN: not judged)
    facts: Mapping[str, Any] = field(default_factory=dict)  # cut-offs and counts for summary.json (JSON-ready)


class IssueType:
    """One kind of problem: its declarations (class attributes) and its finder.

    Subclass it in one file under curation/issues/ (or anywhere: `register_issue_type`), fill
    in the class attributes and `find`, and add one line to ISSUE_TYPES.
    """

    name: ClassVar[str]  # registry key; policy key on_<name>; a lowercase identifier
    reasons: ClassVar[Mapping[str, str]]  # reason code -> what it means (one line)
    columns: ClassVar[Mapping[str, str]] = {}  # manifest column -> dtype (COLUMN_DTYPES)
    default_action: ClassVar[str | None] = "keep"  # ACTIONS; None for "curate" types (their own policy fields)
    sections: ClassVar[Mapping[str, ReportSection]] = {}  # reason code -> its report section (default: generic)
    mechanics: ClassVar[str] = "flag"  # "flag": generic find + keep/drop; "curate": curate()'s own code
    # Flagged samples still enter the pruning ranking (SemDeDup). False: they are left out of it,
    # as a copy of the holdout or an outlier must not become a cluster's prototype.
    rank_for_pruning: ClassVar[bool] = False
    # Bump when `find` changes what it flags: a resumed run then re-runs the curate stage.
    version: ClassVar[int] = 1

    @property
    def policy_key(self) -> str:
        """The DecisionPolicy key that overrides `default_action`: on_<name>."""
        return f"on_{self.name}"

    def find(self, ctx: IssueContext) -> IssueFindings:
        """The flagged samples (per reason code), the type's columns and its facts."""
        raise NotImplementedError(f"issue type {self.name!r} ({self.mechanics}) has no find(); curate() handles it")

    def section(self, code: str) -> ReportSection:
        """How the report lists reason `code`: its declared section; one that names no sort
        column is sorted by the type's first column (lowest first unless declared otherwise)."""
        declared = self.sections.get(code) or ReportSection()
        if declared.sort_by is None and self.columns:
            declared = dataclasses.replace(declared, sort_by=next(iter(self.columns)))
        return declared

    def __repr__(self) -> str:
        return f"<issue type {self.name!r}: {sorted(self.reasons)}>"


def check_issue_type(issue: IssueType) -> IssueType:
    """`issue` if its declarations are complete and consistent, else InvalidArray quoting them."""
    name = getattr(issue, "name", None)
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise InvalidArray(f"an issue type's name must be a lowercase identifier, got {name!r}")
    reasons = getattr(issue, "reasons", None)
    if not isinstance(reasons, Mapping) or not reasons:
        raise InvalidArray(f"issue type {name!r} must declare its reason codes (reasons = {{code: meaning}}), "
                           f"got {reasons!r}")
    for code, meaning in reasons.items():
        if not isinstance(code, str) or not code.isidentifier() or code != code.lower():
            raise InvalidArray(f"issue type {name!r}: a reason code is a lowercase identifier, got {code!r}")
        if not isinstance(meaning, str) or not meaning.strip():
            raise InvalidArray(f"issue type {name!r}: reason {code!r} needs a one-line meaning, got {meaning!r}")
    for column, dtype in dict(issue.columns).items():
        if not isinstance(column, str) or not column.isidentifier():
            raise InvalidArray(f"issue type {name!r}: a column name is an identifier, got {column!r}")
        if dtype not in COLUMN_DTYPES:
            raise InvalidArray(f"issue type {name!r}: column {column!r} has dtype {dtype!r}; "
                               f"one of {COLUMN_DTYPES}")
    if issue.mechanics not in MECHANICS:
        raise InvalidArray(f"issue type {name!r}: mechanics must be one of {MECHANICS}, got {issue.mechanics!r}")
    if issue.mechanics == "flag":
        if issue.default_action not in ACTIONS:
            raise InvalidArray(f"issue type {name!r}: default_action must be one of {ACTIONS}, "
                               f"got {issue.default_action!r}")
        if type(issue).find is IssueType.find:
            raise InvalidArray(f"issue type {name!r} flags samples but defines no find(ctx)")
    unknown = sorted(set(issue.sections) - set(reasons))
    if unknown:
        raise InvalidArray(f"issue type {name!r} has report sections for {unknown!r}, which are not its reason codes")
    return issue


def check_findings(issue: IssueType, findings: IssueFindings, m: int) -> IssueFindings:
    """`findings` if they hold only the type's declared codes and columns, each of M rows."""
    if not isinstance(findings, IssueFindings):
        raise InvalidArray(f"issue type {issue.name!r}: find() must return IssueFindings, got {findings!r}")
    for code, flags in findings.flags.items():
        if code not in issue.reasons:
            raise InvalidArray(f"issue type {issue.name!r} flagged reason {code!r}, which it does not declare "
                               f"(reasons: {sorted(issue.reasons)})")
        arr = np.asarray(flags)
        if arr.shape != (m,) or arr.dtype != bool:
            raise InvalidArray(f"issue type {issue.name!r}: flags for {code!r} must be (M,) = ({m},) bool, "
                               f"got shape {arr.shape} dtype {arr.dtype}")
    for column, values in findings.columns.items():
        if column not in issue.columns:
            raise InvalidArray(f"issue type {issue.name!r} returned column {column!r}, which it does not declare "
                               f"(columns: {sorted(issue.columns)})")
        if len(values) != m:
            raise InvalidArray(f"issue type {issue.name!r}: column {column!r} has {len(values)} rows, not M = {m}")
    return findings


class IssueContext:
    """What an issue type's `find` may read, over the M usable (embedded) rows of one run.

    Values are computed on first use and shared between the types of a run (`shared`): the
    label detectors' report runs once, whoever asks first. Rows are the graph's nodes
    (row i = embeddings[i]); `scatter` back to the N input rows is curate()'s business.
    """

    def __init__(
        self,
        *,
        embeddings: np.ndarray,
        graph: KnnGraph,
        labels: np.ndarray,
        n_classes: int,
        keys: np.ndarray,
        detect: Any = None,
        class_names: list[str] | None = None,
        content_hashes: list[str | None] | None = None,
        holdout_embeddings: np.ndarray | None = None,
        holdout_hashes: list[str | None] | None = None,
        sample_stats: Mapping[str, np.ndarray] | None = None,
        seed: int = 0,
        label_report: Callable[[IssueContext], Any] | Any | None = None,
        report_classes: np.ndarray | None = None,
        duplicate_keys: list[str | None] | None = None,
        duplicate_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        copy_probe: Mapping[str, np.ndarray] | None = None,
        wide_graph: KnnGraph | None = None,
    ) -> None:
        self.embeddings = embeddings  # (M, D) float32, L2-normalised
        self.graph = graph  # the kNN graph over them
        # The same search kept wider (more neighbours per row) for detectors that read past graph.k, or None
        self.wide_graph = wide_graph
        self.labels = np.asarray(labels, dtype=np.int64)  # (M,) given class indices
        self.n_classes = int(n_classes)  # K
        self.keys = np.asarray(keys)  # (M,) int64 ranks of the sample ids: tie-breaks never depend on row order
        self.class_names = class_names  # K names, or None
        self.content_hashes = content_hashes  # M content hashes (None: not read), or None
        # M keys whose equality makes exact duplicates (texts: the normalised text's hash); None: the content hashes
        self.duplicate_keys = duplicate_keys
        self.duplicate_pairs = duplicate_pairs  # (rows, cols, similarity) of known near copies (texts: MinHash), or None
        self.holdout_embeddings = holdout_embeddings  # (H, D) of the holdout catalogs, or None
        self.holdout_hashes = holdout_hashes  # H content hashes, or None
        self.sample_stats = dict(sample_stats or {})  # per-sample decode-time statistics: name -> (M,)
        # Made copies of a sample of the rows (embeddings/copies.py): row (M-space), kind, vectors, phash; or None.
        self.copy_probe = None if copy_probe is None else dict(copy_probe)
        self.seed = int(seed)
        if detect is None:
            from winnow.curation.curate import DetectConfig

            detect = DetectConfig()
        self.detect = detect  # the run's DetectConfig (cut-offs, knobs)
        self._label_report = label_report
        # The class index of each column of the label report's pred_probs (it is computed over
        # the classes present among the usable rows); None: all K, in order.
        self._report_classes = None if report_classes is None else np.asarray(report_classes, dtype=np.int64)
        self._cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per run, under `key` (types that need the same thing share it)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def label_report(self):
        """The label detectors' LabelIssueReport over these rows (curation/label_issues.py)."""
        def compute():
            source = self._label_report
            if source is None:
                raise MissingInput("this context has no label-issue report (curate() computes one)")
            return source(self) if callable(source) else source

        return self.shared("label_report", compute)

    @property
    def pred_probs(self) -> np.ndarray | None:
        """(M, K) out-of-fold class probabilities of the probe (or the user's), None when none ran;
        0 for a class with no usable sample, NaN rows for samples the probe did not judge."""
        def compute():
            probs = getattr(self.label_report, "pred_probs", None)
            if probs is None or self._report_classes is None:
                return probs
            unjudged = ~np.isfinite(probs).all(axis=1)
            if (np.array_equal(self._report_classes, np.arange(self.n_classes)) and probs.dtype == np.float64
                    and np.isnan(probs[unjudged]).all()):
                # All K classes in order and unjudged rows already NaN: the copy below would equal
                # the report's array (80 bytes a row at K = 10; 0.8 GB at 10M rows).
                return probs
            full = np.zeros((len(probs), self.n_classes), dtype=np.float64)
            full[:, self._report_classes] = probs
            full[unjudged] = np.nan
            return full

        return self.shared("pred_probs", compute)

    @property
    def probe_margin(self) -> np.ndarray | None:
        """(M,) out-of-fold p[given] - max p[other], None when the probe did not run."""
        frame = self.label_report.frame
        return frame["probe_margin"].to_numpy() if "probe_margin" in frame.columns else None

    @property
    def near_duplicate_similarity(self) -> float:
        """The cosine at or above which two neighbours are near copies (detect's, else calibrated)."""
        return self.near_duplicate_rule.min_similarity

    @property
    def flat(self) -> np.ndarray | None:
        """(M,) bool: measured images with almost no information (blank, one colour); None unmeasured."""
        from winnow.curation.duplicates import FLAT_ENTROPY

        if "entropy" not in self.sample_stats:
            return None
        measured = self.measured
        return measured & (np.nan_to_num(self.stat("entropy"), nan=99.0) < FLAT_ENTROPY)

    @property
    def measured(self) -> np.ndarray:
        """(M,) bool: rows whose decode-time signals were measured."""
        if "measured" in self.sample_stats:
            return np.asarray(self.sample_stats["measured"], dtype=bool)
        return np.full(len(self), bool(self.sample_stats))

    @property
    def phash(self) -> np.ndarray | None:
        """(M,) int64 perceptual hashes (embeddings/signals.py), None when not measured."""
        return np.asarray(self.stat("phash"), dtype=np.int64) if "phash" in self.sample_stats else None

    @property
    def thumbnails(self) -> np.ndarray | None:
        """(M, 256) uint8 grayscale thumbnails (embeddings/signals.py; all zeros where not measured), or None."""
        if "thumb00" not in self.sample_stats:
            return None
        from winnow.curation.duplicates import thumbnails_from_columns

        return self.shared("thumbnails", lambda: thumbnails_from_columns(self.sample_stats))

    @property
    def graph_aligned(self) -> np.ndarray | None:
        """(M, k) the kNN-graph edges' thumbnail `aligned_similarity` (flat images: -inf), or None."""
        thumbs = self.thumbnails
        if thumbs is None:
            return None
        from winnow.curation.duplicates import graph_aligned_similarity

        flat = self.flat
        valid = self.measured & (True if flat is None else ~flat)
        return self.shared("graph_aligned", lambda: graph_aligned_similarity(self.graph, thumbs, valid=valid))

    @property
    def near_duplicate_rule(self):
        """The run's NearDuplicateRule (curation/duplicates.py): detect's fixed cosine, else calibrated
        on the made copies (copy_probe) against the distinct neighbours; without copies, the distinct tail."""
        def compute():
            from winnow.curation.duplicates import (
                NearDuplicateRule,
                aligned_similarity,
                calibrate_near_duplicates,
                hamming,
                near_duplicate_threshold,
                nearest_distinct_hamming,
            )

            fixed = getattr(self.detect, "near_duplicate_min_similarity", None)
            if fixed is not None:
                return NearDuplicateRule(min_similarity=float(fixed), calibration={"method": "fixed"})
            probe = self.copy_probe
            if probe is None or not len(probe.get("row", ())):
                return NearDuplicateRule(min_similarity=float(near_duplicate_threshold(self.graph)),
                                         calibration={"method": "distinct tail (no copies to calibrate on)"})
            src = np.asarray(probe["row"], dtype=np.int64)
            flat = self.flat
            keep = np.ones(len(src), dtype=bool) if flat is None else ~flat[src]
            src = src[keep]
            sims = np.einsum("ij,ij->i", np.asarray(probe["vectors"])[keep], self.embeddings[src])
            copy_ham = distinct_ham = None
            phash = self.phash
            if phash is not None:
                valid = self.measured & (True if flat is None else ~flat)
                copy_ham = hamming(np.asarray(probe["phash"])[keep], phash[src])
                distinct_ham = nearest_distinct_hamming(phash, np.unique(src), content_hashes=self.content_hashes,
                                                        valid=valid)
            copy_al = graph_al = None
            thumbs = self.thumbnails
            if thumbs is not None and "thumb" in probe:
                made = np.asarray(probe["thumb"], dtype=np.uint8)[keep]
                both = np.concatenate([thumbs[src], made])
                copy_al = aligned_similarity(both, np.arange(len(src)), len(src) + np.arange(len(src)))
                graph_al = self.graph_aligned
            return calibrate_near_duplicates(self.graph, sims, copy_hamming=copy_ham, distinct_hamming=distinct_ham,
                                             content_hashes=self.content_hashes,
                                             copy_kind=np.asarray(probe["kind"])[keep], copy_aligned=copy_al,
                                             graph_aligned=graph_al, phash=phash)

        return self.shared("near_duplicate_rule", compute)

    @property
    def duplicate_groups(self) -> np.ndarray:
        """(M,) int64 duplicate group of each row (-1: none): equal hashes, near copies by the rule."""
        def compute():
            return self.find_duplicates().group

        return self.shared("duplicate_groups", compute)

    def find_duplicates(self, **kw):
        """`duplicates.find_duplicates` over these rows with the run's rule, hashes and flat images."""
        from winnow.curation.duplicates import find_duplicates

        hashes = self.duplicate_keys if self.duplicate_keys is not None else self.content_hashes
        return find_duplicates(self.graph, rule=self.near_duplicate_rule, content_hashes=hashes, keys=self.keys,
                               pairs=self.duplicate_pairs, phash=self.phash, embeddings=self.embeddings,
                               flat=self.flat, aligned=self.graph_aligned if self.near_duplicate_rule.min_aligned <= 1 else None,
                               thumbnails=self.thumbnails,
                               **kw)

    def stat(self, name: str) -> np.ndarray:
        """(M,) per-sample decode-time statistic `name`; MissingInput naming the ones there are."""
        if name not in self.sample_stats:
            raise MissingInput(f"no per-sample statistic {name!r} in this run; have {sorted(self.sample_stats)}")
        return np.asarray(self.sample_stats[name])
