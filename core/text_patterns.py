"""Many regular expressions over a million texts, with exactly Python's `re` results, fast.

pandas hands `\\b`, `\\d` and `\\s` patterns on non-ASCII text (an en dash in a title is enough) to
Python's `re`, one text at a time: ~3 us a pattern a text, and the features use ~40 patterns, so
2 minutes for a million opportunities (benchmarks/opportunities_pipeline.py). Two exact shortcuts:

- `KeywordPatterns`: a pattern `\\b(?:...)\\b` whose alternatives are a finite set of strings
  ("api", "open-source", "looking for a developer", ...) matches a text exactly when one of those
  strings lines up with the text's word runs (\\w+, the very characters \\b is defined by). So
  each text is split into words once, and all such patterns are answered together from it.
- `search`: every match of any other pattern contains the literal text in its top-level
  sequence (the "$" and "mrr" of `\\$\\s?(\\d...)\\s*mrr\\b`); texts without it are skipped with a
  substring test before the regex runs.

tests/unit/test_text_patterns.py checks both against `re.search` on generated text.
"""

import itertools
import re
from collections.abc import Iterable, Sequence

import numpy as np

_parser = re._parser  # the stdlib's own regex parser (pandas uses it the same way)
_c = re._constants
_WORDS = re.compile(r"(\w+)")
_MAX_EXPANSION = 2_000


def _expand(items) -> set[str] | None:
    """The finite set of strings a parsed sequence matches, or None if it is not a small finite set."""
    results = {""}
    for op, arg in items:
        if op is _c.LITERAL:
            options = {chr(arg)}
        elif op is _c.IN:
            if any(o is not _c.LITERAL for o, _ in arg):  # negation, ranges, categories: not literal
                return None
            options = {chr(a) for _, a in arg}
        elif op is _c.BRANCH:
            options = set()
            for alternative in arg[1]:
                expanded = _expand(alternative)
                if expanded is None:
                    return None
                options |= expanded
        elif op is _c.SUBPATTERN:
            _, add_flags, del_flags, sub = arg
            if add_flags or del_flags:
                return None
            options = _expand(sub)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            low, high, sub = arg
            inner = _expand(sub)
            if inner is None or high > 3:
                return None
            options = {"".join(p) for k in range(low, high + 1) for p in itertools.product(sorted(inner), repeat=k)}
        else:  # AT (\b, ^, $), ANY, CATEGORY, GROUPREF, ...
            return None
        if options is None:
            return None
        results = {r + o for r in results for o in options}
        if len(results) > _MAX_EXPANSION:
            return None
    return results


def keyword_strings(pattern: str) -> set[str] | None:
    """For `\\b(?:a|b c|d-e)\\b`-shaped patterns, the strings it looks for; None otherwise."""
    try:
        parsed = _parser.parse(pattern)
    except re.error:
        return None
    items = list(parsed)
    boundary = (_c.AT, _c.AT_BOUNDARY)
    if parsed.state.flags & ~re.UNICODE or len(items) < 3 or items[0] != boundary or items[-1] != boundary:
        return None
    strings = _expand(items[1:-1])
    if not strings or any(not _WORDS.search(s) for s in strings):  # each needs a word to anchor on
        return None
    return strings


class KeywordPatterns:
    """Answers many keyword patterns (see `keyword_strings`) for each text in one pass.

    A string s = a0 w1 a1 ... wk ak (w: maximal word runs, a: the non-word text around them) is
    found between word boundaries exactly when the text has consecutive words w1..wk separated by
    exactly a1..a(k-1); a non-empty a0 must be the whole separator after a previous word (\\b before
    a non-word character needs a word character before it) and a non-empty ak the whole separator
    before a next word."""

    def __init__(self, patterns: dict[str, str]):
        if len(patterns) > 63:
            raise ValueError(f"at most 63 patterns fit a mask, got {len(patterns)}")
        self.names = list(patterns)
        self._single: dict[str, int] = {}  # one bare word -> bit mask of the patterns wanting it
        # Longer strings, by their longest word (rarer than "for" in "[for hire]", so most texts
        # skip the per-word check): word -> [(bit, words, separators, lead, trail, its index)].
        self._compound: dict[str, list[tuple[int, tuple[str, ...], tuple[str, ...], str, str, int]]] = {}
        for bit, (name, pattern) in enumerate(patterns.items()):
            strings = keyword_strings(pattern)
            if strings is None:
                raise ValueError(f"pattern {name!r} is not a \\b(...)\\b set of strings: {pattern!r}")
            for string in strings:
                parts = _WORDS.split(string)
                words, separators = tuple(parts[1::2]), tuple(parts[2:-1:2])
                lead, trail = parts[0], parts[-1]
                if len(words) == 1 and not lead and not trail:
                    self._single[words[0]] = self._single.get(words[0], 0) | (1 << bit)
                else:
                    anchor = max(range(len(words)), key=lambda j: len(words[j]))
                    self._compound.setdefault(words[anchor], []).append(
                        (1 << bit, words, separators, lead, trail, anchor))
        self._single_words = frozenset(self._single)
        self._compound_words = frozenset(self._compound)

    @classmethod
    def accepts(cls, pattern: str) -> bool:
        return keyword_strings(pattern) is not None

    def masks(self, texts: Iterable[str]) -> np.ndarray:
        """Per text, a bit mask: bit i is set when pattern i (in the order given) matches."""
        single, compound = self._single, self._compound
        single_words, compound_words = self._single_words, self._compound_words
        out = []
        for text in texts:
            parts = _WORDS.split(text)
            words = parts[1::2]
            mask = 0
            for word in single_words.intersection(words):
                mask |= single[word]
            present = compound_words.intersection(words)
            if present:
                mask |= _compound_mask(parts, words, compound, present)
            out.append(mask)
        return np.array(out, dtype=np.int64)

    def matches(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        masks = self.masks(texts)
        return {name: (masks >> bit) & 1 == 1 for bit, name in enumerate(self.names)}


def _compound_mask(parts: list[str], words: list[str], compound: dict, present: set[str]) -> int:
    mask = 0
    count = len(words)
    for word in present:
        i = -1
        while word in words[i + 1:]:  # each place the anchor word occurs (list.index scans in C)
            i = words.index(word, i + 1)
            for bit, wanted, separators, lead, trail, anchor in compound[word]:
                start, k = i - anchor, len(wanted)
                if mask & bit or start < 0 or start + k > count:
                    continue
                # words[j] is parts[2j + 1]; the separators before and after it are parts[2j], parts[2j + 2]
                if any(words[start + j] != wanted[j] for j in range(k)):
                    continue
                if any(parts[2 * (start + j) + 2] != separators[j] for j in range(k - 1)):
                    continue
                if lead and (start == 0 or parts[2 * start] != lead):
                    continue
                if trail and (start + k == count or parts[2 * (start + k)] != trail):
                    continue
                mask |= bit
    return mask


def required_literals(pattern: str) -> list[str]:
    """Literal runs of the pattern's top-level sequence: every match contains all of them."""
    runs, current = [], ""
    try:
        parsed = _parser.parse(pattern)
    except re.error:
        return []
    if parsed.state.flags & ~re.UNICODE:  # e.g. IGNORECASE: a literal says nothing
        return []
    for op, arg in parsed:
        if op is _c.LITERAL:
            current += chr(arg)
        elif op is _c.AT:  # zero-width: the characters either side are still adjacent
            continue
        else:
            if current:
                runs.append(current)
            current = ""
    if current:
        runs.append(current)
    return runs


def search(texts: Sequence[str], pattern: str) -> list[re.Match | None]:
    """`re.search(pattern, text)` for each text, skipping texts that lack a required literal."""
    compiled = re.compile(pattern)
    needed = required_literals(pattern)
    if not needed:
        return [compiled.search(t) for t in texts]
    first, *others = sorted(needed, key=len, reverse=True)
    if not others:
        return [compiled.search(t) if first in t else None for t in texts]
    return [compiled.search(t) if first in t and all(n in t for n in others) else None for t in texts]


def contains_each(texts: Sequence[str], patterns: dict[str, str]) -> dict[str, np.ndarray]:
    """For each named pattern, whether `re.search` finds it in each text (a boolean array)."""
    keyword = [name for name, pattern in patterns.items() if KeywordPatterns.accepts(pattern)]
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(keyword), 63):  # one bit of an int64 mask per pattern
        names = keyword[start:start + 63]
        found |= KeywordPatterns({name: patterns[name] for name in names}).matches(texts)
    for name, pattern in patterns.items():
        if name not in found:
            found[name] = np.array([m is not None for m in search(texts, pattern)], dtype=bool)
    return {name: found[name] for name in patterns}
