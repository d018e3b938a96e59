"""Content recovery from vectors of a known space: retrieval of the nearest public texts (faiss), a keyword
decoder (vector -> bag of content words, trained on public texts), and sensitive items (e-mail addresses, URLs,
phone numbers, person and organisation names) found in texts by patterns, with which of them a guess contains."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import faiss
import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from align.vectors import unit_rows_np
from attacks.errors import AttackError
from attacks.metrics import keyword_scores

# Content words: letters only, 3 or more, not an English stop word; the unit both the decoder and its scores use.
WORD_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"
_analyzer = CountVectorizer(stop_words="english", token_pattern=WORD_PATTERN).build_analyzer()


def content_words(text: str) -> set[str]:
    """The set of lower-cased content words of `text`."""
    return set(_analyzer(text))


class NearestTexts:
    """Exact inner-product search over a public reference corpus's vectors (unit rows: cosine)."""

    def fit(self, vectors: np.ndarray, texts: Sequence[str]) -> NearestTexts:
        if len(vectors) != len(texts) or len(texts) == 0:
            raise AttackError(f"the reference corpus needs one text per vector, got {len(texts)} texts and "
                              f"{len(vectors)} vectors")
        self.index_ = faiss.IndexFlatIP(vectors.shape[1])
        self.index_.add(unit_rows_np(vectors))
        self.texts_ = list(texts)
        return self

    def search(self, x: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, row indices) of the `k` nearest reference texts of each row."""
        return self.index_.search(unit_rows_np(x), k)


class KeywordDecoder:
    """A multi-label linear decoder vector -> content words (ridge regression onto the words' presence).

    The vocabulary is the `vocabulary_size` most frequent content words (in at least `min_df` texts) of the
    training texts. A word is predicted when its score clears `threshold_`, chosen on a held-out tenth of the
    training texts to maximise micro F1; at most `max_words` words per row, best first.
    """

    def __init__(self, vocabulary_size: int = 20000, alpha: float = 1.0, min_df: int = 2, max_words: int = 40,
                 seed: int = 0) -> None:
        self.vocabulary_size = vocabulary_size
        self.alpha = alpha
        self.min_df = min_df
        self.max_words = max_words
        self.seed = seed

    def fit(self, x: np.ndarray, texts: Sequence[str]) -> KeywordDecoder:
        if len(x) != len(texts) or len(texts) < 20:
            raise AttackError(f"the keyword decoder needs one text per vector and at least 20 texts, got "
                              f"{len(texts)} texts and {len(x)} vectors")
        x = unit_rows_np(x)
        rng = np.random.default_rng(self.seed)
        held = np.zeros(len(texts), dtype=bool)
        held[rng.choice(len(texts), size=max(1, len(texts) // 10), replace=False)] = True
        vectorizer = CountVectorizer(stop_words="english", token_pattern=WORD_PATTERN, binary=True,
                                     min_df=min(self.min_df, len(texts)), max_features=self.vocabulary_size)
        try:
            y = vectorizer.fit_transform(texts).astype(np.float32).tocsc()
        except ValueError as e:  # sklearn: "empty vocabulary" when the texts hold no content words
            raise AttackError(f"the keyword decoder's training texts hold no content words ({e})") from None
        self.vocabulary_ = vectorizer.get_feature_names_out().astype(object)
        self._solve(x[~held], y[np.flatnonzero(~held)])
        truth = [content_words(t) for t, h in zip(texts, held, strict=True) if h]
        self.threshold_ = self._best_threshold(self.scores(x[held]), truth, np.linspace(0.05, 0.6, 23))
        self._solve(x, y)  # the final map sees every training text
        return self

    def _solve(self, x: np.ndarray, y: sp.csc_matrix) -> None:
        self.x_mean_ = x.mean(axis=0)
        self.y_mean_ = np.asarray(y.mean(axis=0)).ravel().astype(np.float32)
        xc = (x - self.x_mean_).astype(np.float64)
        gram = xc.T @ xc + self.alpha * np.eye(x.shape[1])
        cross = np.asarray((y.T @ xc).T)  # (dim, vocabulary); y is sparse, so the product is cheap
        self.coef_ = np.linalg.solve(gram, cross - np.outer(xc.sum(axis=0), self.y_mean_)).astype(np.float32)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(rows, vocabulary) estimated presence of each word."""
        return (unit_rows_np(x) - self.x_mean_) @ self.coef_ + self.y_mean_

    def _words(self, scores: np.ndarray, threshold: float) -> list[list[str]]:
        """The words of each row whose score clears `threshold`, best first, at most `max_words`. Only the words
        over the threshold are ranked: a full sort of the vocabulary per row cost most of an audit's decoding."""
        out = []
        for row in scores:
            hits = np.flatnonzero(row >= threshold)
            if len(hits) > self.max_words:
                hits = hits[np.argpartition(-row[hits], self.max_words - 1)[:self.max_words]]
            out.append([str(self.vocabulary_[j]) for j in hits[np.argsort(-row[hits], kind="stable")]])
        return out

    def _best_threshold(self, scores: np.ndarray, truth: list[set[str]], thresholds: np.ndarray) -> float:
        """The threshold of `thresholds` with the best micro F1 on held-out rows (the highest among ties)."""
        best = (-1.0, 0.5)
        for threshold in thresholds:
            f1 = keyword_scores([set(w) for w in self._words(scores, threshold)], truth)["f1"]
            best = max(best, (f1, float(threshold)))
        return best[1]

    def predict(self, x: np.ndarray, batch: int = 512) -> list[list[str]]:
        """The predicted words of each row, best first."""
        out: list[list[str]] = []
        for i in range(0, len(x), batch):
            out.extend(self._words(self.scores(x[i:i + batch]), self.threshold_))
        return out


# the keyword decoders by name, for AttackSuite(decoder=...)
DECODERS = {"ridge": KeywordDecoder}


# -- sensitive items -----------------------------------------------------------------------------------------
_NAME = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
SENSITIVE_PATTERNS = {
    "email": re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    "url": re.compile(r"\b(?:https?://|www\.)[^\s<>\"'()\[\]]+[^\s<>\"'()\[\].,;:!?]"),
    "phone": re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{3}[\s.-])\d{3,4}[\s.-]\d{4}(?![\w.]\d)"),
    # names by context, since no language model ships offline: a title before them, "NAME wrote", "NAME <mail>"
    "person": re.compile(rf"(?:\b(?:Mr|Mrs|Ms|Miss|Dr|Prof|Sir)\.?\s+(?P<a>{_NAME}(?:\s+{_NAME})?)"
                         rf"|\b(?P<b>{_NAME}(?:\s+[A-Z]\.)?\s+{_NAME})\s+(?:wrote|writes|said)\b"
                         rf"|\b(?P<c>{_NAME}\s+{_NAME})\s*<[^<>@\s]+@)"),
    "organisation": re.compile(r"\b(?P<o>(?:[A-Z][A-Za-z&]+\s+){1,3}(?:Inc|Corp|Corporation|Ltd|LLC|GmbH|"
                               r"Company|University|Institute|Foundation|Association|Bank|Agency)\b)"),
}
# URL and address parts that name nothing: an item made only of these is not counted as recovered
_GENERIC = {"http", "https", "www", "com", "org", "net", "edu", "gov", "html", "htm", "mailto", "php", "index",
            "mail", "email", "info"}


def sensitive_items(text: str) -> list[dict]:
    """E-mail addresses, URLs, phone numbers, person and organisation names in `text`:
    [{kind, value, tokens}] where `tokens` are the item's distinctive lower-case words (digits for a phone)."""
    items, seen = [], set()
    for kind, pattern in SENSITIVE_PATTERNS.items():
        for m in pattern.finditer(text):
            groups = {k: v for k, v in m.groupdict().items() if v}
            value = next(iter(groups.values())) if groups else m.group(0)
            if (kind, value) in seen:
                continue
            seen.add((kind, value))
            if kind == "phone":
                tokens = ["".join(re.findall(r"\d", value))]
            else:
                tokens = sorted({w for w in re.findall(r"[^\W\d_]{3,}", value.lower()) if w not in _GENERIC})
            items.append({"kind": kind, "value": value, "tokens": tokens})
    return items


def recovered_items(items: Iterable[dict], words: Iterable[str]) -> list[dict]:
    """The items whose distinctive tokens all appear among the recovered `words` (items with none never do)."""
    words = set(words)
    return [item for item in items if item["tokens"] and set(item["tokens"]) <= words]
