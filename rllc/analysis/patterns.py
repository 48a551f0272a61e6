"""Serial classification of a head's tokens in context (rLLC paper, Appendix B.2-B.5).

A *token in context* is a (sample, position) pair: the context ``tokens[: pos + 1]``, the token
to be predicted ``tokens[pos + 1]``, and the key position that the head attends to most from
``pos`` (the max-attention token). Each token in context is tested in order against

1. **induction**: the context holds an earlier ``[A][B]`` with ``A`` the current token and ``B``
   the next token, and the head's max-attention token is the current ``A`` (previous-token
   side of the circuit) or the earlier ``B`` (induction side);
2. **Dyck**: the next token closes a delimiter opened earlier, with valid nesting in between.
   Delimiters are brackets ``() [] {} <>``, quotation marks, markdown emphasis (``_``, ``**``,
   backticks) and the natural-language split constructions of Appendix B.3 (``both … and``,
   ``either … or``, ``neither … nor``, ``not only … but``, ``more/less/better … than``,
   ``most/least … ever``, ``why/what/how … ?``);
3. **skip n-gram**: a pattern from :data:`SKIP_NGRAMS` (post-quotation and post-parenthetical
   tokens, finishing a comparative after ``than``, abbreviations, phrasal verbs with an
   inserted object, URL and e-mail pieces);
4. **n-gram**: the tokens from the max-attention token to the next token occur in at least two
   of the head's tokens in context;
5. otherwise **unexplained**.

Dyck and skip n-gram tests read the decoded text, so they need a ``decode`` function (token
id → string). Each match also returns a *key*, the identity of the pattern (the (opening,
closing) pair, the skip n-gram's tuple, the n-gram's token tuple), used to count distinct
patterns per head.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

PATTERNS = ("induction", "dyck", "skip_ngram", "ngram", "unexplained")
MULTIGRAM_PATTERNS = ("dyck", "skip_ngram", "ngram")

Decode = Callable[[int], str]

BRACKETS = {")": "(", "]": "[", "}": "{", ">": "<"}
OPENERS = set(BRACKETS.values())
# symmetric delimiters: a token closes one when an odd number precede it in the span
SYMMETRIC = ('"', "'", "`", "**", "_")
# split constructions (B.3): closing word → opening words; matched within the current sentence
SPLIT_CONSTRUCTIONS = {
    "and": ("both",),
    "or": ("either",),
    "nor": ("neither",),
    "but": ("not only",),
    "than": ("more", "less", "better", "worse", "fewer", "greater", "rather"),
    "th": ("more", "less", "better"),  # mistokenised "th|an"
    "ever": ("most", "least"),
    "?": ("why", "what", "how", "who", "when", "where", "which"),
}
# skip n-grams (B.4): (name, opener regex on the context tail, next-token regex)
PHRASAL = ("prevent from", "keep safe", "let go", "let die", "remove from", "accused of",
           "turn into", "asked whether", "protect from", "stop from", "take off", "put on")
SKIP_NGRAMS: tuple[tuple[str, str, str], ...] = (
    ("post-quotation", r"[\"'\u201d\u2019]\s*[,.]?\s*$", r"^\s*(said|says|wrote|asked|added|of|told)\b"),
    ("post-parenthetical", r"\)\s*$", r"^\s*[A-Za-z0-9]"),
    ("post-comparative", r"\bthan\s*$", r"^\s*\w"),
    ("abbreviation", r"\b(?:[A-Z]\.){1,}[A-Z]?$", r"^\s*(?:[A-Z]|\.)"),
    ("url", r"://[^\s]*$", r"^/"),
    ("email", r"\b[\w.+-]+$", r"^@"),
    *((f"phrasal:{p}", rf"\b{p.split()[0]}\w*\s+\S+(?:\s+\S+){{0,3}}\s*$", rf"^\s*{p.split()[1]}\b")
      for p in PHRASAL),
)
SENTENCE_END = re.compile(r"(?:[.!?]\s|\n\s*\n)")


@dataclass(frozen=True)
class Match:
    pattern: str
    key: tuple


def induction_match(context: Sequence[int], next_token: int, max_attn: int) -> Match | None:
    """An in-context bigram [A][B] … [A] → [B], attended via the current A or an earlier B."""
    pos = len(context) - 1
    a = context[pos]
    earlier_b = [j + 1 for j in range(pos - 1) if context[j] == a and context[j + 1] == next_token]
    if not earlier_b:
        return None
    if max_attn == pos or max_attn in earlier_b:
        return Match("induction", (a, next_token))
    return None


def _valid_nesting(span: str) -> bool:
    """No bracket in ``span`` closes something it did not open, and all it opens it closes."""
    stack: list[str] = []
    for ch in span:
        if ch in OPENERS:
            stack.append(ch)
        elif ch in BRACKETS:
            if not stack or stack[-1] != BRACKETS[ch]:
                return False
            stack.pop()
    return not stack


def _bracket_opening(text: str, closer: str) -> int | None:
    """Index of the bracket in ``text`` that ``closer`` would close, or None."""
    want, depth = BRACKETS[closer], 0
    for i in range(len(text) - 1, -1, -1):
        ch = text[i]
        if ch in BRACKETS:
            depth += 1
        elif ch in OPENERS:
            if depth == 0:
                return i if ch == want else None
            depth -= 1
    return None


def _current_sentence(text: str) -> str:
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return text[ends[-1]:] if ends else text


def dyck_match(context_text: str, next_text: str) -> Match | None:
    """The next token closes a delimiter or split construction opened earlier in the context,
    and the span between them nests validly."""
    nxt = next_text.strip()
    if not nxt:
        return None
    # brackets: the first closing bracket of the next token, if nothing before it opens one
    for k, ch in enumerate(next_text):
        if ch in BRACKETS:
            if any(c in OPENERS for c in next_text[:k]):
                break
            i = _bracket_opening(context_text + next_text[:k], ch)
            if i is not None and _valid_nesting(context_text[i + 1:] + next_text[:k]):
                return Match("dyck", (BRACKETS[ch], ch))
            break
    # symmetric delimiters, within the current paragraph: the next token starts with the
    # delimiter glued to the previous word (a closing use), and the last earlier occurrence is
    # an opening use (not preceded by a letter or digit, not followed by a space)
    paragraph = context_text.split("\n\n")[-1]
    if paragraph and not paragraph[-1].isspace():
        for d in SYMMETRIC:
            if not next_text.startswith(d):
                continue
            i = paragraph.rfind(d)
            if i < 0:
                continue
            before = paragraph[i - 1] if i > 0 else " "
            after = paragraph[i + len(d): i + len(d) + 1]
            if not before.isalnum() and after and not after.isspace() and _valid_nesting(paragraph[i + len(d):]):
                return Match("dyck", (d, d))
    # split constructions, within the current sentence
    sentence = _current_sentence(context_text).lower()
    word = nxt.lower()
    for closer, openers in SPLIT_CONSTRUCTIONS.items():
        hit = word.startswith(closer) if closer == "?" else re.fullmatch(rf"{closer}\W*", word) is not None
        if not hit:
            continue
        for op in openers:
            m = list(re.finditer(rf"\b{op}\b", sentence))
            if m and _valid_nesting(sentence[m[-1].end():]):
                tail = sentence[m[-1].end():].strip()
                if tail:  # something between opener and closer: a split, not a bigram
                    return Match("dyck", (op, closer))
    return None


def skip_ngram_match(context_text: str, next_text: str) -> Match | None:
    """A preset skip n-gram (:data:`SKIP_NGRAMS`) ending in the next token."""
    tail = context_text[-80:]
    for name, opener, closer in SKIP_NGRAMS:
        flags = re.IGNORECASE if name.startswith("phrasal") else 0
        if re.search(closer, next_text) and re.search(opener, tail, flags=flags):
            return Match("skip_ngram", (name, next_text.strip()))
    return None


def ngram_key(context: Sequence[int], next_token: int, max_attn: int) -> tuple[int, ...]:
    """The tokens from the max-attention token up to and including the next token."""
    return (*context[max_attn:], next_token)


def classify_contexts(contexts: pd.DataFrame, tokens: Sequence[Sequence[int]], decode: Decode) -> pd.DataFrame:
    """Classify one head's tokens in context serially (induction → Dyck → skip n-gram → n-gram).

    ``contexts`` has columns ``sample``, ``pos`` and ``max_attn`` (key position); ``tokens[s]`` is
    sample ``s``'s token ids (at least ``pos + 2`` long). Returns ``contexts`` with ``pattern`` and
    ``key`` columns added."""
    patterns, keys, pending = [], [], []
    for i, row in enumerate(contexts.itertuples(index=False)):
        seq = tokens[row.sample]
        if row.pos + 1 >= len(seq):
            raise ValueError(f"sample {row.sample} has no token after position {row.pos}")
        if not 0 <= row.max_attn <= row.pos:
            raise ValueError(f"max_attn {row.max_attn} outside the causal context of position {row.pos}")
        context, nxt = list(seq[: row.pos + 1]), int(seq[row.pos + 1])
        match = induction_match(context, nxt, int(row.max_attn))
        if match is None:
            text = "".join(decode(t) for t in context)
            match = dyck_match(text, decode(nxt)) or skip_ngram_match(text, decode(nxt))
        if match is None:
            pending.append(i)
            patterns.append("unexplained")
            keys.append(ngram_key(context, nxt, int(row.max_attn)))
        else:
            patterns.append(match.pattern)
            keys.append(match.key)
    # n-grams: the attended span + next token recurs among the head's (still unexplained) contexts
    counts = Counter(keys[i] for i in pending)
    for i in pending:
        if counts[keys[i]] >= 2:
            patterns[i] = "ngram"
    out = contexts.copy()
    out["pattern"] = patterns
    out["key"] = [repr(k) for k in keys]
    return out


def pattern_summary(classified: pd.DataFrame) -> pd.DataFrame:
    """Per head: the fraction of tokens in context per pattern, and distinct patterns memorised.

    ``classified`` needs columns ``component``, ``pattern`` and ``key``. Columns of the result:
    ``frac_<pattern>`` for each pattern, ``n_<pattern>`` distinct keys for the multigram
    patterns, ``n_multigrams`` (their sum), and ``top_pattern`` (the most frequent explained
    pattern, "unexplained" if none)."""
    rows = []
    for comp, g in classified.groupby("component", sort=False):
        row: dict = {"component": comp, "n_contexts": len(g)}
        frac = g["pattern"].value_counts(normalize=True)
        for p in PATTERNS:
            row[f"frac_{p}"] = float(frac.get(p, 0.0))
        for p in MULTIGRAM_PATTERNS:
            row[f"n_{p}"] = int(g.loc[g["pattern"] == p, "key"].nunique())
        row["n_multigrams"] = sum(row[f"n_{p}"] for p in MULTIGRAM_PATTERNS)
        explained = {p: row[f"frac_{p}"] for p in PATTERNS if p != "unexplained"}
        best = max(explained, key=explained.get)
        row["top_pattern"] = best if explained[best] > 0 else "unexplained"
        rows.append(row)
    return pd.DataFrame(rows)


def multigram_keys(classified: pd.DataFrame, head: str) -> set[str]:
    """The distinct multigram keys (n-gram, skip n-gram and Dyck patterns) among a head's
    classified tokens in context."""
    rows = classified[(classified["component"] == head) & classified["pattern"].isin(MULTIGRAM_PATTERNS)]
    return set(rows["key"])


def key_text(key: str, decode: Decode) -> str:
    """A multigram key as text: token ids decoded and joined; other keys as they are."""
    try:
        parts = ast.literal_eval(key)
    except (ValueError, SyntaxError):
        return key
    if isinstance(parts, tuple) and parts and all(isinstance(p, int) for p in parts):
        return "".join(decode(p) for p in parts)
    return " … ".join(map(str, parts)) if isinstance(parts, tuple) else str(parts)


def migration(before: pd.DataFrame, after: pd.DataFrame, sources: Sequence[str], destinations: Sequence[str],
              n_examples: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Where each source head's multigrams at an earlier checkpoint (``before``) are held later
    (``after``): rows src, n_mid (its distinct multigrams then), kept (still its own), n_moved
    (now a destination's and not its own), top_dst (the destination holding most of them) and
    n_top_dst; plus up to ``n_examples`` keys per source that moved to its top destination."""
    later = {h: multigram_keys(after, h) for h in {*sources, *destinations}}
    rows, examples = [], []
    for src in sources:
        mine = multigram_keys(before, src)
        moved = {d: mine & later[d] for d in destinations if d != src}
        top = max(moved, key=lambda d: len(moved[d])) if moved else ""
        elsewhere = set().union(*moved.values()) if moved else set()
        rows.append({"src": src, "n_mid": len(mine), "kept": len(mine & later[src]),
                     "n_moved": len(elsewhere - later[src]), "top_dst": top, "n_top_dst": len(moved.get(top, ()))})
        examples += [{"src": src, "dst": top, "key": k} for k in sorted(moved.get(top, ()))[:n_examples]]
    return pd.DataFrame(rows), pd.DataFrame(examples, columns=["src", "dst", "key"])

