"""Rules 1-3 of the package docstring as plain functions of a title and a canonical URL, and
the token set that rule 4 hashes: no numpy, no database."""

import itertools
import re

from core.discovery.fingerprints import normalized_title

THRESHOLD = 0.5
# Rule 3: (revenue figure, title word) pairs two titles must have in common.
MIN_SHARED_FIGURE_WORDS = 2
# Sites whose URLs name the post, not the product: the same URL there is not evidence of sameness.
AGGREGATOR_HOSTS = frozenset(
    {
        "news.ycombinator.com",
        "reddit.com",
        "x.com",
        "twitter.com",
        "producthunt.com",
        "github.com",
        "freelancer.com",
        "youtube.com",
        "medium.com",
        "indiehackers.com",
    }
)
# Words that every launch title uses and that make unrelated launches look alike.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "the",
        "for",
        "of",
        "to",
        "in",
        "on",
        "with",
        "your",
        "you",
        "my",
        "our",
        "i",
        "we",
        "is",
        "are",
        "it",
        "this",
        "that",
        "at",
        "by",
        "from",
        "as",
        "show",
        "hn",
        "ask",
        "launch",
        "launched",
        "launching",
        "new",
        "now",
        "just",
        "built",
        "made",
        "introducing",
        "meet",
    ]
)
# A canonical URL's host (a regex, for `str.extract` over a column as for one URL).
HOST_PATTERN = r"^https://([^/]+)"
# Directories with one listing per product, and where in the path its slug is.
_LISTING_SLUG = {
    "producthunt.com": re.compile(r"^/(?:products|posts)/([^/]+)"),
    "freepublicapis.com": re.compile(r"^/([^/]+)$"),
}
_URL_PARTS = re.compile(r"^https://([^/?#]+)([^?#]*)")
REPOSITORY_URL = re.compile(r"^https://github\.com/([^/?#]+)/([^/?#]+)$")
# An organisation named after its product (shiplog-dev, shiplog-hq) and its repositories
# (shiplog-cli, shiplog-js) by convention.
_OWNER_SUFFIX = re.compile(r"-(dev|hq|labs|app|io|inc|team|org)$")
_REPO_SUFFIX = re.compile(r"-(cli|sdk|js|py|go|rs|app|api|web|server|core)$")
# A site's own pages that describe the product; deeper pages (a blog post) may be about anything.
_PRODUCT_PAGES = frozenset({"", "pricing", "features"})
_GENERIC_SUBDOMAINS = frozenset({"www", "app", "blog", "docs", "api", "m"})
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu"})  # foo.co.uk: "foo"
_AMOUNT = re.compile(r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s?([km])\b)?", re.IGNORECASE)
_MULTIPLIER = {"k": 1_000, "m": 1_000_000}
_MIN_AMOUNT = 1_000
# Words that come with any figure ("$4.2k MRR", "$5.1k/month"), so they do not tell stories apart.
_UNIT_WORDS = frozenset(
    ["mrr", "arr", "month", "months", "mo", "year", "years", "yr", "week", "weeks", "day", "days", "revenue"]
)
_HAS_DIGIT = re.compile(r"[\d$€£]")


def tokens(title: str, host: str) -> set[str]:
    words = [w for w in normalized_title(title).split() if w not in STOPWORDS and len(w) > 1]
    found = set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}
    if host:
        found.add(f"host:{host}")
    return found


def _compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _site_name(host: str) -> str:
    labels = host.split(":")[0].split(".")[:-1]  # no port, no TLD
    if len(labels) > 1 and labels[-1] in _SECOND_LEVEL:
        labels = labels[:-1]
    named = [label for label in labels if label not in _GENERIC_SUBDOMAINS]
    return _compact(named[0]) if named else ""


def product_name(canonical: str) -> str:
    """The product a canonical URL names by itself, or "" (see the package docstring, rule 2)."""
    return _named(canonical)[1]


def _named(canonical: str) -> tuple[str, str]:
    """("listing" or "site", the product's name), or ("", "")."""
    repository = REPOSITORY_URL.match(canonical)
    if repository:
        owner, repo = (part.lower() for part in repository.groups())
        name = _OWNER_SUFFIX.sub("", owner)
        return ("listing", _compact(name)) if name == _REPO_SUFFIX.sub("", repo) else ("", "")
    parts = _URL_PARTS.match(canonical)
    if not parts:
        return "", ""
    host, path = parts.groups()
    if host in _LISTING_SLUG:
        slug = _LISTING_SLUG[host].match(path)
        return ("listing", _compact(slug.group(1))) if slug else ("", "")
    if host in AGGREGATOR_HOSTS or path.strip("/") not in _PRODUCT_PAGES:
        return "", ""
    name = _site_name(host)
    return ("site", name) if len(name) >= 3 else ("", "")


def name_keys(canonical: str) -> tuple[list[str], list[str]]:
    """Rule 2 as keys: (the keys an opportunity is indexed under, the keys it looks up). A site's
    page matches the pages of its own host and the listings of its name; a listing matches the
    sites and the listings of its name. Two sites with one name on other hosts (pulse.io,
    pulse.dev) are often different companies, so they do not match."""
    kind, name = _named(canonical)
    if kind == "site":
        host = f"host:{_URL_PARTS.match(canonical).group(1)}"
        return [host, f"site:{name}"], [host, f"listing:{name}"]
    if kind == "listing":
        return [f"listing:{name}"], [f"listing:{name}", f"site:{name}"]
    return [], []


def is_product_url(canonical: str) -> bool:
    """Whether the URL itself is the product's: the same one on two posts is the same launch."""
    return host_of(canonical) not in AGGREGATOR_HOSTS or bool(REPOSITORY_URL.match(canonical))


def amounts(title: str) -> set[str]:
    """The revenue figures a title states (see the package docstring, rule 3), as "$7850"."""
    found = set()
    for currency, number, multiplier in _AMOUNT.findall(title):
        value = round(float(number.replace(",", "")) * _MULTIPLIER.get(multiplier.lower(), 1))
        if value >= _MIN_AMOUNT and len(str(value).rstrip("0")) >= 2:
            found.add(f"{currency}{value}")
    return found


def figure_words(title: str) -> set[str]:
    """Each (revenue figure, other title word) pair of a title, as "$4200 changelog": two titles
    with MIN_SHARED_FIGURE_WORDS of them in common state one figure about the same thing."""
    figures = amounts(title)
    if not figures:
        return set()
    words = {
        w
        for w in normalized_title(title).split()
        if w not in STOPWORDS and len(w) > 1 and w not in _UNIT_WORDS and not _HAS_DIGIT.search(w)
    }
    return {f"{figure} {word}" for figure in figures for word in words}


def host_of(canonical: str) -> str:
    found = re.match(HOST_PATTERN, canonical)
    return found.group(1) if found else ""
