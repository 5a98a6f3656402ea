"""Many regular expressions over a million texts, with exactly Python's `re` results, fast.

pandas hands `\\b`, `\\d` and `\\s` patterns on non-ASCII text (an en dash in a title is enough) to
Python's `re`, one text at a time: ~3 us a pattern a text, and the features use ~30 patterns. Here
the texts go through Arrow kernels all at once instead, and only the few texts on which RE2 and
Python disagree go through Python.

RE2 (pyarrow.compute) reads `\\w`, `\\d`, `\\s` and `\\b` as ASCII classes, Python's `re` as Unicode ones;
Python's `\\s` also takes `\\v` and `\\x1c`-`\\x1f`. The two agree on every text that has none of those
characters and no letter, digit or space outside ASCII; symbols such as "–", "€" or an emoji are
non-word, non-space characters for both. `Texts` finds the texts outside that (accented letters, CJK,
a no-break space) and answers them with Python's `re`.

- Keyword patterns `\\b(?:...)\\b` whose alternatives are a finite set of strings ("api",
  "open-source", "looking for a developer") match exactly when one of those strings lines up with
  the text's runs of word and non-word characters (the runs `\\b` is defined by). `KeywordPatterns`
  cuts all texts into runs with numpy, looks every run up in the keywords' vocabulary with one Arrow
  hash lookup, and answers all such patterns together. 30 RE2 passes would take 10x longer.
- Any other pattern runs in RE2 on the texts that contain the literal text of its top-level
  sequence (the "$" and "mrr" of `\\$\\s?(\\d...)\\s*mrr\\b`). The pattern must mean the same to RE2 as to
  Python (no look-arounds, back-references or `{,n}`).

tests/unit/test_text_patterns.py checks all of it against `re.search` on generated text.
"""

import itertools
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_parser = re._parser  # the stdlib's own regex parser (pandas uses it the same way)
_c = re._constants
_WORDS = re.compile(r"(\w+)")
_MAX_EXPANSION = 2_000
_CHUNK = 200_000  # texts cut into runs at a time: a million texts make ~50 million runs

# Bytes of ASCII word characters; every non-ASCII byte is a non-word byte, as it is to RE2 and, for
# the texts left to the vectorized paths, to Python.
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[list(b"0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")] = True
# Python's `\s` matches these ASCII characters, RE2's does not.
_PYTHON_ONLY_SPACE_BYTE = np.zeros(256, dtype=bool)
_PYTHON_ONLY_SPACE_BYTE[[0x0B, 0x1C, 0x1D, 0x1E, 0x1F]] = True
_WORD_OR_SPACE = re.compile(r"[\w\s]")


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
                        (1 << bit, words, separators, lead, trail, anchor)
                    )
        self._single_words = frozenset(self._single)
        self._compound_words = frozenset(self._compound)
        # For `plain_masks`: the words looked up in every text (bare keywords, and the anchor word of
        # each longer string), and per anchor word the runs of its strings as bytes.
        words = [*self._single, *(word for word in self._compound if word not in self._single)]
        self._words = pa.array(words, type=pa.large_string())
        self._single_bits = np.array([self._single.get(word, 0) for word in words], dtype=np.int64)
        self._is_anchor = np.array([word in self._compound for word in words])
        # anchor's id -> [(bit, runs, the anchor's place among them, a word before?, a word after?)]
        self._sequences = {
            words.index(word): [
                (
                    bit,
                    [run.encode() for run in _run_sequence(w, s, lead, trail)],
                    (1 if lead else 0) + 2 * anchor,
                    bool(lead),
                    bool(trail),
                )
                for bit, w, s, lead, trail, anchor in rules
            ]
            for word, rules in self._compound.items()
        }

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

    def plain_masks(self, texts: pa.LargeStringArray) -> np.ndarray:
        """`masks`, vectorized; exact for texts whose non-ASCII characters are all non-word ones."""
        chunks = [self._plain_masks(texts.slice(start, _CHUNK)) for start in range(0, len(texts), _CHUNK)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

    def _plain_masks(self, texts: pa.LargeStringArray) -> np.ndarray:
        offsets, data = _buffers(texts)
        runs, bounds = _runs(offsets, data)
        looked_up = pc.index_in(runs, value_set=self._words)
        known = np.flatnonzero(looked_up.is_valid().to_numpy(zero_copy_only=False))
        ids = pc.drop_null(looked_up).to_numpy()
        runs_per_text = np.diff(np.searchsorted(bounds, offsets))  # `bounds` holds every offset
        text_of = np.repeat(np.arange(len(texts)), runs_per_text)

        bits = self._single_bits[ids]
        starts, start_bits = [known[bits != 0]], [bits[bits != 0]]  # runs where a match starts, and its bits
        anchored = self._is_anchor[ids]
        anchors, anchor_ids = known[anchored], ids[anchored]
        for anchor_id, rules in self._sequences.items():
            at = anchors[anchor_ids == anchor_id]
            for bit, sequence, anchor, word_before, word_after in rules:
                start = at - anchor
                start = start[(start - word_before >= 0) & (start + len(sequence) - 1 + word_after < len(runs))]
                # Within one text, runs alternate between words and non-words: a lead or trail
                # run with another run of the same text beyond it has the word that \b needs.
                start = start[text_of[start - word_before] == text_of[start + len(sequence) - 1 + word_after]]
                for j, run in enumerate(sequence):
                    if j != anchor:
                        start = start[_runs_equal(bounds, data, start + j, run)]
                starts.append(start)
                start_bits.append(np.full(len(start), bit, dtype=np.int64))
        masks = np.zeros(len(texts), dtype=np.int64)
        np.bitwise_or.at(masks, text_of[np.concatenate(starts)], np.concatenate(start_bits))
        return masks


def _runs_equal(bounds: np.ndarray, data: np.ndarray, run: np.ndarray, string: bytes) -> np.ndarray:
    """Per run (an index into `bounds`), whether its bytes are exactly `string`."""
    start = bounds[run]
    equal = bounds[run + 1] - start == len(string)
    for k, byte in enumerate(string):
        equal[equal] = data[start[equal] + k] == byte
    return equal


def _run_sequence(words: tuple[str, ...], separators: tuple[str, ...], lead: str, trail: str) -> list[str]:
    """The runs a string is made of: [lead], w1, s1, w2, ..., wk, [trail]."""
    middle = [run for pair in zip(words, separators, strict=False) for run in pair] + [words[-1]]
    return ([lead] if lead else []) + middle + ([trail] if trail else [])


def _buffers(texts: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """The texts' offsets (from 0) and their UTF-8 bytes, without copying them."""
    _, offsets, data = texts.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


def _runs(offsets: np.ndarray, data: np.ndarray) -> tuple[pa.LargeStringArray, np.ndarray]:
    """The texts cut into maximal runs of word and of non-word bytes, as one Arrow array over the
    same bytes, and the runs' bounds. A run never spans two texts, and never splits a character
    (every non-ASCII byte is a non-word byte)."""
    word = _WORD_BYTE[data]
    cut = np.ones(len(data) + 1, dtype=bool)
    np.not_equal(word[1:], word[:-1], out=cut[1:-1])
    cut[offsets] = True
    bounds = np.flatnonzero(cut)
    return pa.LargeStringArray.from_buffers(len(bounds) - 1, pa.py_buffer(bounds), pa.py_buffer(data)), bounds


def _compound_mask(parts: list[str], words: list[str], compound: dict, present: set[str]) -> int:
    mask = 0
    count = len(words)
    for word in present:
        i = -1
        while word in words[i + 1 :]:  # each place the anchor word occurs (list.index scans in C)
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


class Texts:
    """Texts prepared once for many patterns: one Arrow array, and which texts need Python's `re`
    (see the module docstring)."""

    def __init__(self, texts: Iterable[str] | pd.Series):
        array = pa.array(texts, type=pa.large_string(), from_pandas=True)
        self.arrow = (array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array).fill_null("")
        self.python_rows = np.flatnonzero(_needs_python(self.arrow))
        self._python_texts = self.arrow.take(self.python_rows).to_pylist()
        self._containing: dict[str, np.ndarray] = {}
        self._candidates_for: dict[frozenset[str], tuple[np.ndarray, pa.LargeStringArray]] = {}

    def __len__(self) -> int:
        return len(self.arrow)

    def contains_each(self, patterns: dict[str, str]) -> dict[str, np.ndarray]:
        """For each named pattern, whether `re.search` finds it in each text (a boolean array)."""
        keyword = [name for name, pattern in patterns.items() if KeywordPatterns.accepts(pattern)]
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keyword), 63):  # one bit of an int64 mask per pattern
            matcher = KeywordPatterns({name: patterns[name] for name in keyword[start : start + 63]})
            masks = matcher.plain_masks(self.arrow)
            masks[self.python_rows] = matcher.masks(self._python_texts)
            found |= {name: (masks >> bit) & 1 == 1 for bit, name in enumerate(matcher.names)}
        for name, pattern in patterns.items():
            if name not in found:
                found[name] = self.contains(pattern)
        return {name: found[name] for name in patterns}

    def contains(self, pattern: str) -> np.ndarray:
        """Per text, whether `re.search(pattern, text)` finds a match."""
        rows, candidates = self._candidates(pattern)
        found = np.zeros(len(self), dtype=bool)
        found[rows] = pc.match_substring_regex(candidates, pattern).to_numpy(zero_copy_only=False)
        found[self.python_rows] = [m is not None for m in search(self._python_texts, pattern)]
        return found

    def extract(self, pattern: str) -> pd.DataFrame:
        """`re.search(pattern, text).groups()` of the texts it matches: one row per such text,
        indexed by its position, one column per group, None where a group took no part."""
        parsed = _parser.parse(pattern)
        # Arrow reports a group that took no part as "", which is only unambiguous if no group can match "".
        if not parsed.state.groups > 1 or any(low == 0 for low, _ in parsed.state.groupwidths[1:]):
            raise ValueError(f"extract needs groups, none of which can match an empty string: {pattern!r}")
        rows, candidates = self._candidates(pattern)
        matched = pc.extract_regex(candidates, _named_groups(pattern))
        valid = matched.is_valid()
        groups = [pc.if_else(pc.equal(group, ""), None, group) for group in matched.filter(valid).flatten()]
        index = rows[valid.to_numpy(zero_copy_only=False)]
        python = [
            (row, m.groups())
            for row, m in zip(self.python_rows, search(self._python_texts, pattern), strict=False)
            if m is not None
        ]
        if python:
            index = np.concatenate([index, [row for row, _ in python]])
            groups = [
                pa.concat_arrays([group, pa.array([found[g] for _, found in python], type=group.type)])
                for g, group in enumerate(groups)
            ]
        return (
            pd.DataFrame({g: pd.Series(group, dtype="str") for g, group in enumerate(groups)})
            .set_axis(index)
            .sort_index()
        )

    def _candidates(self, pattern: str) -> tuple[np.ndarray, pa.LargeStringArray]:
        """The texts RE2 answers that contain every literal the pattern requires: their positions,
        and a copy of them that patterns requiring the same literals share."""
        literals = frozenset(required_literals(pattern))
        if literals not in self._candidates_for:
            keep = np.ones(len(self), dtype=bool)
            keep[self.python_rows] = False
            for literal in literals:
                if literal not in self._containing:
                    # RE2 finds a literal ~3x faster than pc.match_substring (memchr on its first byte).
                    escaped = "".join(f"\\x{{{ord(c):x}}}" for c in literal)
                    self._containing[literal] = pc.match_substring_regex(self.arrow, escaped).to_numpy(
                        zero_copy_only=False
                    )
                keep &= self._containing[literal]
            rows = np.flatnonzero(keep)
            self._candidates_for[literals] = rows, self.arrow.take(rows)
        return self._candidates_for[literals]


def _needs_python(texts: pa.LargeStringArray) -> np.ndarray:
    """Per text, whether it has a character that Python's `\\w` or `\\s` matches and RE2's does not."""
    offsets, data = _buffers(texts)
    lead = np.flatnonzero(data >= 0xC0)  # the first byte of each non-ASCII character
    codes = _code_points(data, lead)
    odd = [code for code in np.unique(codes).tolist() if _WORD_OR_SPACE.match(chr(code))]
    control = np.flatnonzero(data < 0x20)  # a table lookup of every byte measured ~10x slower
    at = np.concatenate([lead[np.isin(codes, odd)], control[_PYTHON_ONLY_SPACE_BYTE[data[control]]]])
    needs = np.zeros(len(texts), dtype=bool)
    needs[np.searchsorted(offsets, at, side="right") - 1] = True
    return needs


def _code_points(data: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """The code points of the UTF-8 characters whose first bytes are at `lead`."""
    first = data[lead].astype(np.int64)
    size = 2 + (first >= 0xE0) + (first >= 0xF0)  # 110xxxxx, 1110xxxx, 11110xxx
    code = first & (0x7F >> size)
    for k in (1, 2, 3):
        more = np.flatnonzero(size > k)
        code[more] = (code[more] << 6) | (data[lead[more] + k] & 0x3F)
    return code


def _named_groups(pattern: str) -> str:
    """The pattern with its capturing groups named g1, g2, ... (Arrow's extract_regex wants names)."""
    out, in_class, group, i = [], False, 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "(" and not in_class and not pattern.startswith("(?", i):
            group += 1
            char = f"(?P<g{group}>"
        out.append(char)
        i += 1
    named = "".join(out)
    if re.compile(named).groupindex != {f"g{g}": g for g in range(1, re.compile(pattern).groups + 1)}:
        raise ValueError(f"could not name the groups of {pattern!r}")
    return named
