"""Keyword names and descriptions of clusters, the way BERTopic's representations are made, for when no capable
model names them (the embedded model's names are nearly all refused).

* candidates: words and adjacent word pairs ("exchange rate", "top up") that are not junk (`names.junk_words`),
  used by max(2, 10%) of the cluster's documents (`clustering.min_docs`), and not used in every cluster;
* ranked by class-based TF-IDF, one per root ("charge" / "charged" / "charges" are one), a pair preferred to its
  word when most documents with the word use the pair ("exchange" -> "exchange rate");
* re-ranked by similarity to the cluster's centroid (KeyBERT) and diversified (maximal marginal relevance);
* the name is the best phrase ("Exchange rate", "Top-up"), or the best two words ("Pin / blocked");
* the description quotes the cluster's most typical documents.

A cluster whose documents fall into two clear groups is named for its larger group (`cores`), never glued from
both ("Phone / oil / car").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from workflow import clustering
from workflow.names import PHRASE_ONLY, TAIL_ONLY, junk_words, root

_TOKEN = re.compile(r"(?u)\b[a-zA-Z][a-zA-Z']+\b")
_CLAUSE = re.compile(r"[.,;:!?()\n]+")
CANDIDATES = 10  # c-TF-IDF's best terms of a cluster that embeddings re-rank
MMR_LAMBDA = 0.7  # relevance vs novelty when picking keywords one by one
CTFIDF_WEIGHT = 0.0  # relevance: this much c-TF-IDF rank, the rest similarity to the centroid
PHRASE_SHARE = 0.6  # a word gives way to a pair with it when this share of the documents using the word use the pair
NAME_PARTNERS = 3  # keywords after the best one that may complete a one-word name
PARTNER_SHARE = 0.2  # ... used with it by this share of the documents using it (a rarer word names a subtopic only:
#                      "Card / activating" for a cluster of lost, linked, activated and blocked cards)
PAIR_SHARE = 0.4  # two words are one phrase when this share of the documents using both write them side by side
JOINERS = frozenset({"my", "the", "a", "an", "your", "our", "this", "that", "its", "their"})  # dropped from a phrase:
#                      "verify my identity" -> "Verify identity"
LINKS = frozenset({"of", "for", "to", "on", "in", "from", "with", "by", "at"})  # kept: "Fee for withdrawal"
GLUE = JOINERS | LINKS  # the one small word that may stand between a phrase's two words
# "X is still Y", "X shows as Y": a state, named "Y X" ("payment is still pending" -> "Pending payment")
STATE = frozenset({"is", "are", "was", "were", "been", "being", "still", "now", "already", "just", "show", "shows",
                   "showing", "shown", "appear", "appears", "appearing", "listed", "marked", "as", "up"})
STATE_GAP = 5  # at most this many state words between X and Y
TYPICAL_DOCS = 3  # documents quoted in a description
QUOTE_WORDS = 12  # ... each cut to this many words
SPLIT_MIN_DOCS = 2 * clustering.MIN_CLUSTER_DOCS  # a cluster this big may be two groups glued together ...
SPLIT_MIN_SHARE = 0.25  # ... when its smaller half holds this share of it ...
SPLIT_SILHOUETTE = 0.3  # ... and the two halves are this far apart (mean cosine silhouette)


def tokens(text: str) -> list[str]:
    return [t.lower().removesuffix("'s") for t in _TOKEN.findall(text)]


def analyze(text: str) -> list[str]:
    """A document's candidate terms: words of 3+ letters that are not junk and not a phrase-only word ("new"), and
    pairs of adjacent words neither of which is junk ("top up", "new card", "exchange rate"), none starting with a
    tail-only word ("up card")."""
    junk = junk_words()
    toks = tokens(text)
    keep = [t not in junk for t in toks]
    grams = [t for t, k in zip(toks, keep) if k and len(t) >= 3 and t not in PHRASE_ONLY]
    grams += [f"{a} {b}" for a, b, ka, kb in zip(toks, toks[1:], keep, keep[1:])
              if ka and kb and root(a) != root(b) and max(len(a), len(b)) >= 3 and a not in TAIL_ONLY]
    return grams


@dataclass
class Terms:
    """Term statistics over clusters: c-TF-IDF scores and how many documents of each cluster use each term."""

    terms: list[str]
    scores: np.ndarray  # (k, V)
    df: np.ndarray  # (k, V)
    sizes: np.ndarray  # (k,) documents per cluster
    common: np.ndarray  # (V,) a single word that documents of every cluster use (k >= 3)


def term_stats(texts: list[str], assign: np.ndarray) -> Terms | None:
    """c-TF-IDF (BERTopic): a cluster's documents are one document, term frequency L1-normalised per cluster,
    idf = log(1 + mean terms per cluster / the term's count). Documents assigned -1 count nowhere."""
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    assign = np.asarray(assign)
    k = int(assign.max()) + 1 if len(assign) else 0
    rows = np.flatnonzero(assign >= 0)
    if not k or not len(rows):
        return None
    try:
        counts_doc = CountVectorizer(analyzer=analyze).fit(texts_at(texts, rows))
    except ValueError:  # no candidate term at all
        return None
    vec = counts_doc
    D = vec.transform(texts_at(texts, rows)).astype(np.float64)
    D, terms = _by_root(D, list(vec.get_feature_names_out()))
    member = sparse.csr_matrix((np.ones(len(rows)), (assign[rows], np.arange(len(rows)))), shape=(k, len(rows)))
    counts = np.asarray((member @ D).todense())
    df = np.asarray((member @ (D > 0).astype(np.float64)).todense())
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    idf = np.log(1 + counts.sum(axis=1).mean() / np.maximum(counts.sum(axis=0), 1))
    single = np.array([" " not in t for t in terms])
    common = single & (df > 0).all(axis=0) if k >= 3 else np.zeros(len(terms), dtype=bool)
    return Terms(terms, tf * idf, df, np.bincount(assign[rows], minlength=k), common)


def _by_root(D, terms: list[str]):
    """Columns of inflections of one term ("exchange rate", "exchange rates") summed into one, shown as its most
    frequent form: one keyword per root, and counts that do not split between spellings."""
    from scipy import sparse

    keys = [" ".join(root(w) for w in t.split()) for t in terms]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    G = sparse.csr_matrix((np.ones(len(terms)), (np.arange(len(terms)), [index[k] for k in keys])),
                          shape=(len(terms), len(index)))
    total = np.asarray(D.sum(axis=0)).ravel()
    best: dict[int, int] = {}
    for v, k in enumerate(keys):
        u = index[k]
        if u not in best or total[v] > total[best[u]]:
            best[u] = v
    return D @ G, [terms[best[u]] for u in range(len(index))]


def texts_at(texts: list[str], rows: np.ndarray) -> list[str]:
    return [texts[int(r)] for r in rows]


def ranked(stats: Terms, c: int, min_share: float = clustering.KEYWORD_MIN_SHARE, top: int = 8) -> list[str]:
    """Cluster ``c``'s best terms by c-TF-IDF: used by `clustering.min_docs` of its documents, not common to every
    cluster, one per root, a pair in place of its word when most documents with the word use the pair."""
    floor = clustering.min_docs(int(stats.sizes[c]), min_share)
    s, df = stats.scores[c], stats.df[c]
    order = [i for i in np.argsort(-s, kind="stable") if s[i] > 0 and df[i] >= floor and not stats.common[i]]
    pairs = [i for i in order if " " in stats.terms[i]]
    chosen: list[str] = []
    roots: set[str] = set()
    for i in order:
        term = stats.terms[i]
        if " " not in term:  # "exchange" gives way to "exchange rate" when most of its documents say that
            r = root(term)
            better = next((j for j in pairs if r in {root(w) for w in stats.terms[j].split()}
                           and df[j] >= PHRASE_SHARE * df[i]), None)
            term = stats.terms[better] if better is not None else term
        rs = {root(w) for w in term.split()}
        if rs & roots or term in chosen:
            continue
        chosen.append(term)
        roots |= rs
        if len(chosen) == top:
            break
    return chosen


def mmr(sims: np.ndarray, E: np.ndarray, n: int, lam: float = MMR_LAMBDA) -> list[int]:
    """Maximal marginal relevance: indices picked one by one for similarity to the centroid (``sims``) less
    similarity to those already picked (rows of ``E``, unit vectors)."""
    picked: list[int] = []
    left = list(range(len(sims)))
    while left and len(picked) < n:
        if picked:
            redundancy = (E[left] @ E[picked].T).max(axis=1)
            score = lam * sims[left] - (1 - lam) * redundancy
        else:
            score = sims[left]
        best = left[int(np.argmax(score))]
        picked.append(best)
        left.remove(best)
    return picked


def cores(X: np.ndarray, assign: np.ndarray, seed: int = 0, which: list[int] | None = None) -> np.ndarray:
    """``assign`` with the smaller group of each cluster that splits into two clear groups set to -1: what the
    cluster is named from. Clear: 2-means halves with a mean cosine silhouette of SPLIT_SILHOUETTE or more, the
    smaller holding SPLIT_MIN_SHARE of the cluster or more."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    out = np.array(assign, copy=True)
    for c in (range(int(assign.max()) + 1 if len(assign) else 0) if which is None else which):
        rows = np.flatnonzero(assign == c)
        if len(rows) < SPLIT_MIN_DOCS:
            continue
        halves = KMeans(n_clusters=2, n_init=2, random_state=seed).fit_predict(X[rows])
        sizes = np.bincount(halves, minlength=2)
        if sizes.min() < SPLIT_MIN_SHARE * len(rows):
            continue
        if silhouette_score(X[rows], halves, metric="cosine") >= SPLIT_SILHOUETTE:
            out[rows[halves == int(np.argmin(sizes))]] = -1
    return out


def surface(term: str, texts: list[str]) -> str:
    """A pair as its documents mostly write it: "top-up" when they hyphenate it more often than not."""
    if " " not in term:
        return term
    a, b = term.split()
    joined = sum(len(re.findall(rf"\b{a}-{b}\b", t, flags=re.I)) for t in texts)
    spaced = sum(len(re.findall(rf"\b{a}\s+{b}\b", t, flags=re.I)) for t in texts)
    return f"{a}-{b}" if joined > spaced else term


def _uses(term: str, text_roots: frozenset[str]) -> bool:
    return {root(w) for w in term.split()} <= text_roots


def pair_phrase(a: str, b: str, texts: list[str]) -> str | None:
    """How the documents write two words side by side, in either order and across one small word ("pending
    payment", "verify my identity", "fee for withdrawing", "payment is still pending"), when PAIR_SHARE of those using
    both do: the most common such span (`_span`). None when they are rarely side by side (two aspects, not one)."""
    ra, rb = root(a), root(b)
    spans: Counter[str] = Counter()
    both = 0
    for text in texts:
        clauses = [tokens(c) for c in _CLAUSE.split(text)]  # side by side within a clause, not across "blocked: pin"
        if not {ra, rb} <= {root(t) for toks in clauses for t in toks}:
            continue
        both += 1
        span = next((s for toks in clauses if (s := _span(toks, ra, rb))), None)
        if span:
            spans[span] += 1
    found = sum(spans.values())
    if found < clustering.KEYWORD_MIN_DOCS or found < PAIR_SHARE * both:
        return None
    return spans.most_common(1)[0][0]


def _span(toks: list[str], ra: str, rb: str) -> str | None:
    """The first place the roots ra and rb stand side by side in ``toks``: adjacent, across one joiner or link word
    (joiners dropped), or as "X is (still) Y" / "X shows as Y", which names "Y X" ("payment is pending" -> "pending
    payment")."""
    rs = [root(t) for t in toks]
    for i, r in enumerate(rs):
        other = rb if r == ra else ra if r == rb else None
        if other is None:
            continue
        for gap in range(1, STATE_GAP + 2):
            j = i + gap
            if j >= len(rs) or rs[j] != other:
                continue
            between = toks[i + 1:j]
            if gap == 1 or (gap == 2 and between[0] in GLUE):
                return " ".join(t for t in toks[i:j + 1] if t not in JOINERS)
            if all(t in STATE for t in between):  # "is still", "showing as" ("why is my payment still pending")
                return f"{toks[j]} {toks[i]}"
    return None


def cased(name: str, texts: list[str]) -> str:
    """Words the documents mostly write in capitals ("ATM", "PIN", "SEPA") kept so; the rest as they are."""
    def one(word: str) -> str:
        seen = Counter(m for t in texts for m in re.findall(rf"\b{re.escape(word)}\b", t, flags=re.I))
        upper = sum(n for w, n in seen.items() if w.isupper() and len(w) > 1)
        return word.upper() if upper * 2 > sum(seen.values()) > 0 else word

    return " ".join(one(w) for w in name.split(" "))


def phrase_name(words: list[str], texts: list[str], max_words: int) -> str:
    """The best keyword when it is a phrase ("Exchange rate"); else the best word and the next keyword that
    PARTNER_SHARE of its documents use with it, as the documents write the two side by side ("Verify identity",
    "Pending payment") or else as two words ("Pin / blocked"): two words no document uses together are two topics
    glued, and a partner few of them use names a subtopic, not the cluster ("Card")."""
    if not words:
        return ""
    name = surface(words[0], texts)
    if " " not in words[0]:
        used = [frozenset(root(t) for t in tokens(text)) for text in texts]
        with_first = [u for u in used if _uses(words[0], u)]
        floor = max(clustering.KEYWORD_MIN_DOCS, PARTNER_SHARE * len(with_first))
        second = next((w for w in words[1:NAME_PARTNERS + 1] if sum(_uses(w, u) for u in with_first) >= floor), None)
        if second is not None:
            phrase = pair_phrase(words[0], second, texts) if " " not in second else None
            if phrase is None:
                name = f"{name} / {surface(second, texts)}"
            else:  # "top up" -> "top-up" as the documents write it; "fee for withdrawing" stays
                name = surface(phrase, texts) if len(phrase.split()) == 2 else phrase
    capped = cased(" ".join(name.split()[:max_words]).strip(" /"), texts)
    return capped[:1].upper() + capped[1:]


def quote(text: str, n: int = QUOTE_WORDS) -> str:
    ws = " ".join(text.split()).replace('"', "'").split()
    return " ".join(ws[:n]) + ("…" if len(ws) > n else "")


def typical_description(texts: list[str], max_words: int, n: int = TYPICAL_DOCS) -> str:
    """'Typical: "How do I top up by card?"; "My top-up failed".' from the most typical documents, most typical
    first, within max_words."""
    out: list[str] = []
    for t in dict.fromkeys(quote(t) for t in texts if t.strip()):
        candidate = 'Typical: ' + "; ".join(f'"{q}"' for q in [*out, t]) + "."
        if len(candidate.split()) > max_words and out:
            break
        out.append(t)
        if len(out) == n:
            break
    if not out:
        return ""
    text = 'Typical: ' + "; ".join(f'"{q}"' for q in out) + "."
    return text if len(text.split()) <= max_words else " ".join(text.split()[:max_words]) + '…"'


@dataclass(frozen=True)
class Representation:
    keywords: list[str]  # most representative first
    name: str
    description: str


def represent(texts: list[str], X: np.ndarray, assign: np.ndarray, embed: Callable[[list[str]], np.ndarray],
              which: list[int] | None = None, top: int = 8, name_max_words: int = 10,
              description_max_words: int = 30, seed: int = 0) -> dict[int, Representation]:
    """Keywords, a name and a description for each cluster of ``assign`` in ``which`` (default all). ``texts`` are
    what names are made from (instructions to a model removed), ``X`` their unit-length embeddings, ``embed`` the same
    embedder over short phrases (called once, on all candidate terms)."""
    k = int(assign.max()) + 1 if len(assign) else 0
    which = list(range(k)) if which is None else which
    core = cores(X, assign, seed, which)
    stats = term_stats(texts, core)
    shortlist = {c: ranked(stats, c, top=CANDIDATES) if stats is not None else [] for c in which}
    phrases = sorted({t for ts in shortlist.values() for t in ts})
    E = clustering.unit(embed(phrases)) if phrases else np.zeros((0, X.shape[1]))
    at = {t: i for i, t in enumerate(phrases)}
    out: dict[int, Representation] = {}
    for c in which:
        rows = np.flatnonzero(core == c)
        rows = rows if len(rows) else np.flatnonzero(assign == c)
        centre = clustering.unit(X[rows].mean(axis=0)) if len(rows) else np.zeros(X.shape[1])
        cands = shortlist[c]
        if cands:
            Ec = E[[at[t] for t in cands]]
            rank = 1 - np.arange(len(cands)) / len(cands)  # c-TF-IDF order, 1 for the best
            relevance = (1 - CTFIDF_WEIGHT) * (Ec @ centre) + CTFIDF_WEIGHT * rank
            words = [cands[i] for i in mmr(relevance, Ec, top)]
        else:
            words = []
        typical = rows[np.argsort(-(X[rows] @ centre), kind="stable")] if len(rows) else rows
        docs = texts_at(texts, rows)
        out[c] = Representation(words, phrase_name(words, docs, name_max_words),
                                typical_description(texts_at(texts, typical[:10]), description_max_words))
    return out


def cluster_keywords(texts: list[str], assign: np.ndarray, top: int = 8,
                     min_share: float = clustering.KEYWORD_MIN_SHARE) -> list[list[str]]:
    """Each cluster's most distinctive words and word pairs by class-based TF-IDF (BERTopic's c-TF-IDF), one per
    root, junk words left out (`ranked`). Only terms that `clustering.min_docs` of the cluster's documents use count
    (c-TF-IDF alone happily picks one document's words, repeated three times, over words every document shares)."""
    k = int(assign.max()) + 1 if len(assign) else 0
    stats = term_stats(texts, assign)
    return [ranked(stats, c, min_share, top) if stats is not None else [] for c in range(k)]
