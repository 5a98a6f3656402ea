"""What the benchmark scripts share: the repository on sys.path, timing, peak memory, and a
generator of raw records in a real source's shape (Hacker News Algolia hits).

The scripts are run from the repository root as `python benchmarks/<name>.py`; this module is
imported as `_common` because the script's own directory is first on sys.path."""

import json
import platform
import resource
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA_DIR = REPO / "benchmarks" / ".data"  # git-ignored


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    import os

    return f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


class Timings:
    """Named wall-clock stages, printed as seconds and rows/s."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, float, int]] = []
        self.peaks: list[float] = []

    @contextmanager
    def stage(self, name: str, rows: int):
        started = time.perf_counter()
        yield
        self.stages.append((name, time.perf_counter() - started, rows))
        self.peaks.append(peak_rss_mb())
        print(f"  ... {name}: {self.stages[-1][1]:.1f} s", file=sys.stderr, flush=True)  # progress on long runs

    def set_rows(self, rows: int) -> None:
        """The row count of the stage just timed, when it is only known afterwards."""
        self.stages[-1] = (*self.stages[-1][:2], rows)

    def seconds(self, *names: str) -> float:
        return sum(s for n, s, _ in self.stages if n in names)

    def table(self) -> str:
        lines = [f"  {'stage':48} {'seconds':>8} {'rows':>10} {'rows/s':>11} {'peak RSS MB':>12}"]
        for (name, seconds, rows), peak in zip(self.stages, self.peaks, strict=True):
            lines.append(f"  {name:48} {seconds:8.2f} {rows:10,} {rows / max(seconds, 1e-9):11,.0f} {peak:12,.0f}")
        return "\n".join(lines)


# -- synthetic Hacker News Algolia hits ---------------------------------------------------------

SYLLABLES = [
    "ship",
    "log",
    "invoice",
    "bolt",
    "pulse",
    "metric",
    "form",
    "pilot",
    "cron",
    "ping",
    "vault",
    "prompt",
    "task",
    "flow",
    "lead",
    "scout",
    "page",
    "craft",
    "quote",
    "snap",
    "mail",
    "desk",
    "stack",
    "relay",
    "hook",
    "lens",
    "chart",
    "nest",
    "grid",
    "forge",
    "beam",
    "spark",
    "loop",
    "dash",
    "kit",
    "bee",
    "hive",
    "wave",
    "byte",
    "cloud",
    "sync",
    "mint",
    "rank",
    "radar",
    "tidy",
    "note",
    "brief",
    "link",
    "board",
    "pay",
    "bill",
    "ledger",
    "lite",
    "list",
    "feed",
    "mill",
    "watch",
    "guard",
    "shift",
    "trail",
    "zen",
    "arc",
    "nova",
    "orbit",
    "pixel",
]
SUFFIXES = ("", "", "", "", "HQ", "AI", "ly", "ify", "io", "kit")
TLDS = (".io", ".dev", ".app", ".com", ".ai", ".so", ".co")
ADJECTIVES = (
    "",
    "",
    "",
    "open-source",
    "self-hosted",
    "AI-powered",
    "privacy-first",
    "lightweight",
    "no-code",
    "tiny",
    "fast",
    "simple",
    "collaborative",
    "automated",
    "real-time",
    "offline-first",
    "minimal",
    "visual",
    "headless",
    "embeddable",
    "serverless",
    "keyboard-driven",
    "local-first",
    "developer-friendly",
    "affordable",
    "modern",
    "secure",
    "multilingual",
    "white-label",
    "usage-based",
    "friendly",
    "smart",
    "async",
    "typed",
    "zero-config",
)
SUBJECTS = (
    "invoice",
    "changelog",
    "status page",
    "cron job",
    "receipt",
    "prompt",
    "uptime",
    "analytics",
    "PDF",
    "rank",
    "cold email",
    "Notion template",
    "dunning",
    "churn",
    "bookkeeping",
    "screenshot",
    "job board",
    "newsletter",
    "affiliate link",
    "weather",
    "VAT",
    "meeting",
    "form",
    "session note",
    "waitlist",
    "webhook",
    "course",
    "lead",
    "page speed",
    "appointment",
    "design token",
    "database migration",
    "Postgres",
    "boilerplate",
    "lab equipment",
    "Airtable",
    "review",
    "BigQuery",
    "background job",
    "MRR",
    "feature flag",
    "log",
    "error",
    "CRM",
    "help desk",
    "knowledge base",
    "survey",
    "e-signature",
    "scheduling",
    "expense",
    "password",
    "backup",
    "image",
    "video",
    "podcast",
    "link",
    "QR code",
    "translation",
    "SMS",
    "email",
    "geocoding",
    "OCR",
    "search",
    "payments",
    "tax",
    "payroll",
    "time",
    "habit",
    "note",
    "whiteboard",
    "diagram",
    "code review",
    "CI",
    "test",
    "load test",
    "API mock",
    "docs",
    "landing page",
    "membership",
    "community",
    "event ticket",
    "inventory",
    "POS",
    "menu",
    "booking",
    "chatbot",
    "transcription",
    "resume",
    "interview",
    "onboarding",
    "NPS",
    "heatmap",
    "A/B test",
    "SEO",
    "backlink",
    "keyword",
    "social post",
    "content calendar",
    "press kit",
    "pitch deck",
    "cap table",
    "investor",
    "grant",
    "contract",
    "compliance",
    "GDPR",
    "accessibility",
    "uptime SLA",
    "on-call",
    "incident",
    "cost",
    "Kubernetes",
    "Terraform",
    "Docker image",
    "npm package",
    "Python package",
    "Slack",
    "Discord",
    "Telegram",
)
TOOLS = (
    "tracker",
    "monitor",
    "builder",
    "API",
    "widget",
    "dashboard",
    "bot",
    "CLI",
    "plugin",
    "app",
    "platform",
    "parser",
    "generator",
    "manager",
    "scheduler",
    "assistant",
    "checker",
    "analyzer",
    "library",
    "SDK",
    "marketplace",
    "directory",
    "course",
    "template",
    "extension",
    "service",
    "kit",
    "hub",
    "studio",
    "autopilot",
    "exporter",
    "importer",
    "linter",
    "playground",
    "gateway",
    "proxy",
    "recorder",
    "reminder",
    "calculator",
    "planner",
)
QUALIFIERS = (
    "",
    "",
    "",
    "",
    "that chases late payments",
    "with Slack alerts",
    "in one click",
    "without code",
    "in your browser",
    "for teams",
    "with an API",
    "built on Postgres",
    "that runs on a Raspberry Pi",
    "in a single binary",
    "with Stripe billing",
    "that respects privacy",
    "with offline sync",
    "for under $10",
    "with webhooks",
    "powered by GPT",
    "written in Rust",
    "written in Go",
    "for the command line",
    "with a generous free tier",
    "in 50 languages",
    "with SOC 2",
    "that fits in a tweet",
    "for Notion",
    "for Shopify",
    "for WordPress",
)
AUDIENCES = (
    "freelancers",
    "SaaS teams",
    "Shopify stores",
    "dentists",
    "agencies",
    "indie hackers",
    "solo founders",
    "therapists",
    "real estate agents",
    "event planners",
    "developers",
    "designers",
    "accountants",
    "clinics",
    "hair salons",
    "creators",
    "bloggers",
    "e-commerce brands",
    "recruiters",
    "nonprofits",
    "podcasters",
    "restaurants",
    "law firms",
    "teachers",
    "landlords",
    "startups",
    "data teams",
    "marketers",
    "sales teams",
    "small businesses",
)
REVENUE = (
    ("", 0.40),
    (" (${price}/mo)", 0.15),
    (", ${price}/month", 0.05),
    (", now at ${k}k MRR", 0.10),
    (" – ${k0}k ARR, two people", 0.05),
    (": making ${price0}/month after {n} months", 0.05),
    (", from ${price}/month", 0.05),
    (" at ${cents} per page", 0.03),
    (" – {n} customers at ${price}/month", 0.07),
    (" (free tier, then ${price}/user/month)", 0.05),
)
STORY_TEXT = (
    "<p>I built {name} because {audience} kept asking for {what}.</p><p>We're at ${k}k MRR after {n} months, "
    "pricing is ${price}/month. Happy to answer questions about the stack (Python, Postgres, Stripe).</p>",
    "<p>Hi HN! {name} is {what} for {audience}.</p><p>It's free for small teams and ${price}/month after that. "
    "There's an API with webhooks, and a self-hosted version on GitHub under the MIT license.</p>",
    "<p>Background: I freelanced for {n} years, charging ${price0}/month retainers.</p><p>Looking for feedback "
    "on pricing and onboarding; budget: ${price}-${price0} for a designer if anyone is interested.</p>",
    "<p>Numbers so far: {n} paying customers, ${k}k in revenue, churn around 3%.</p>",
)
# Ask HN titles: opener + verb + the product + closer, so that two questions rarely share more
# than their opener (a dozen fixed questions made every Ask HN post a near-duplicate of hundreds).
ASK_OPENERS = (
    "How do you",
    "How did you",
    "What's the best way to",
    "Is it worth it to",
    "Should I",
    "Anyone else trying to",
    "How would you",
    "Where do people",
    "When did you decide to",
    "What made you",
    "How hard is it to",
    "Who else wants to",
    "Why is it so hard to",
)
ASK_VERBS = (
    "price",
    "market",
    "sell",
    "validate",
    "launch",
    "grow",
    "support",
    "open-source",
    "bootstrap",
    "find customers for",
    "get feedback on",
    "compete with",
    "build",
    "rewrite",
    "monetize",
)
ASK_CLOSERS = (
    "?",
    " in 2026?",
    " without ads?",
    " as a solo founder?",
    " with no audience?",
    " on a budget?",
    " for {audience}?",
    " while working full time?",
    " in the EU?",
    " after a failed launch?",
)
TRACKING = (
    "",
    "",
    "?utm_source=hn",
    "?utm_source=hackernews&utm_medium=social&utm_campaign=launch",
    "?ref=hn",
    "?ref=producthunt&fbclid=IwAR3x",
    "?gclid=abc123&plan=pro",
    "/?utm_source=newsletter#pricing",
)


def _weighted(rng: np.random.Generator, options: tuple, n: int) -> np.ndarray:
    weights = np.array([w for _, w in options])
    return rng.choice(len(options), size=n, p=weights / weights.sum())


def hn_hits(
    n: int, seed: int = 42, duplicate_share: float = 0.10, reworded_share: float = 0.05, start: int = 0
) -> list[dict]:
    """`n` Algolia `search_by_date` hits as the API returns them (the fields and nesting of
    core/discovery/sources/snapshots/hackernews), with a realistic mix:

    - Show HN / Ask HN / Launch HN titles naming a product, a tagline and often a revenue phrase
      ("$4.2k MRR", "($29/mo)", "$120k ARR"), and HTML story text on a third of them;
    - product URLs with and without www., trailing slashes and tracking parameters; Ask HN posts
      without a URL;
    - `duplicate_share` exact duplicates (an earlier hit reposted: same title and canonical URL,
      other tracking parameters, new objectID);
    - `reworded_share` near-duplicates (an earlier product with another tagline, same site)."""
    rng = np.random.default_rng(seed)
    syllable = rng.integers(0, len(SYLLABLES), size=(n, 3))
    three = rng.random(n) < 0.6
    suffix = rng.integers(0, len(SUFFIXES), size=n)
    tld = rng.integers(0, len(TLDS), size=n)
    adjective = rng.integers(0, len(ADJECTIVES), size=n)
    subject = rng.integers(0, len(SUBJECTS), size=n)
    tool = rng.integers(0, len(TOOLS), size=n)
    qualifier = rng.integers(0, len(QUALIFIERS), size=n)
    audience = rng.integers(0, len(AUDIENCES), size=n)
    revenue = _weighted(rng, REVENUE, n)
    kind = rng.choice(4, size=n, p=[0.72, 0.15, 0.05, 0.08])  # show, ask, launch, plain
    story = rng.integers(0, len(STORY_TEXT), size=n)
    has_story = (rng.random(n) < 0.3) | (kind == 1)
    tracking = rng.integers(0, len(TRACKING), size=n)
    www = rng.random(n) < 0.2
    prices = rng.choice([5, 7, 9, 12, 15, 19, 24, 29, 39, 49, 79, 99, 149, 299], size=n)
    money = rng.integers(1, 120, size=n)
    months = rng.integers(2, 36, size=n)
    points = rng.zipf(1.8, size=n).clip(max=5000) - 1
    comments = (points * rng.random(n)).astype(int)
    now = int(datetime(2026, 11, 25, tzinfo=UTC).timestamp())
    created = now - rng.integers(0, 30 * 86400, size=n)
    # Reposts and rewordings point at an earlier hit (chosen up front so the mix is exact).
    roll = rng.random(n)
    earlier = (rng.random(n) * np.arange(n)).astype(int)
    repost = (roll < duplicate_share) & (np.arange(n) > 0)
    reword = (roll >= duplicate_share) & (roll < duplicate_share + reworded_share) & (np.arange(n) > 0)

    hits: list[dict] = []
    names, domains, titles, urls = [], [], [], []
    for i in range(n):
        if repost[i] or reword[i]:
            j = earlier[i]
            while repost[j] or reword[j]:  # follow to the original
                j = earlier[j]
            name, domain = names[j], domains[j]
        else:
            parts = [SYLLABLES[s] for s in syllable[i, : 3 if three[i] else 2]]
            name = "".join(parts).capitalize() + SUFFIXES[suffix[i]]
            domain = name.lower() + TLDS[tld[i]]
        names.append(name)
        domains.append(domain)
        object_id = str(46_000_000 + start + i)
        if repost[i] and urls[earlier[i]] is None:
            # An Ask HN post has no URL of its own: its repost is the same hit met again on a later
            # page (Algolia pages shift as new posts arrive), with the same objectID.
            object_id = hits[earlier[i]]["objectID"]
        product = f"{SUBJECTS[subject[i]]} {TOOLS[tool[i]]}"
        what = " ".join(w for w in (ADJECTIVES[adjective[i]], product, QUALIFIERS[qualifier[i]]) if w)
        article = "an" if what[0].lower() in "aeiou" else "a"
        fill = {
            "name": name,
            "what": f"{article} {what}",
            "audience": AUDIENCES[audience[i]],
            "price": prices[i],
            "price0": prices[i] * 10,
            "k": f"{money[i] / 10:.1f}",
            "k0": money[i],
            "n": months[i],
            "cents": f"0.00{money[i] % 9 + 1}",
        }
        if repost[i]:
            title = titles[earlier[i]]
            base = urls[earlier[i]]
            url = None if base is None else base.split("?")[0].rstrip("/") + TRACKING[tracking[i]]
        else:
            phrase = REVENUE[revenue[i]][0].format(**fill)
            if kind[i] == 1:
                closer = ASK_CLOSERS[int(revenue[i] + tracking[i]) % len(ASK_CLOSERS)].format(**fill)
                title = (
                    f"Ask HN: {ASK_OPENERS[int(syllable[i, 2]) % len(ASK_OPENERS)]} "
                    f"{ASK_VERBS[int(story[i] * 4 + suffix[i]) % len(ASK_VERBS)]} {fill['what']}{closer}"
                )
                url = None
            else:
                prefix = ("Show HN: ", "", "Launch HN: ", "")[kind[i]]
                title = f"{prefix}{name} – {what[0].upper()}{what[1:]} for {fill['audience']}{phrase}"
                url = f"https://{'www.' if www[i] else ''}{domain}{TRACKING[tracking[i]]}"
        titles.append(title)
        urls.append(url)
        author = f"{SYLLABLES[syllable[i, 0]]}{SYLLABLES[syllable[i, 1]]}{i % 97}"
        text = STORY_TEXT[story[i]].format(**fill) if has_story[i] else None
        tag = ("show_hn", "ask_hn", "launch_hn", "story")[kind[i]]
        created_iso = datetime.fromtimestamp(int(created[i]), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        hit = {
            "_highlightResult": {
                "author": {"matchLevel": "none", "matchedWords": [], "value": author},
                "title": {"matchLevel": "none", "matchedWords": [], "value": title},
            },
            "_tags": ["story", f"author_{author}", f"story_{object_id}", tag],
            "author": author,
            "children": [int(object_id) + k for k in range(1, 1 + min(int(comments[i]), 3))],
            "created_at": created_iso,
            "created_at_i": int(created[i]),
            "num_comments": int(comments[i]),
            "objectID": object_id,
            "points": int(points[i]),
            "story_id": int(object_id),
            "title": title,
            "updated_at": "2026-11-25T23:41:07Z",
        }
        if url is not None:
            hit["url"] = url
            hit["_highlightResult"]["url"] = {"matchLevel": "none", "matchedWords": [], "value": url}
        if text is not None:
            hit["story_text"] = text
        hits.append(hit)
    return hits


def raw_frames(
    hits: list[dict], source: str = "hackernews", page_size: int = 1000, fetched_at: datetime | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`raw.responses` and `raw.records` rows for the hits, `page_size` hits per response (Algolia's
    hitsPerPage maximum), as core.discovery.fetch writes them."""
    fetched_at = fetched_at or datetime(2026, 11, 26, tzinfo=UTC)
    pages = (len(hits) + page_size - 1) // page_size
    response_ids = [str(uuid.UUID(int=p + 1)) for p in range(pages)]
    responses = pd.DataFrame(
        {
            "response_id": response_ids,
            "source": source,
            "mode": "snapshot",
            "request_url": [
                f"https://hn.algolia.com/api/v1/search_by_date?tags=show_hn&hitsPerPage={page_size}&page={p}"
                for p in range(pages)
            ],
            "status_code": 200,
            "content_type": "application/json; charset=utf-8",
            "body_bytes": 0,
            "fetched_at": pd.Timestamp(fetched_at) + pd.to_timedelta(np.arange(pages), unit="s"),
            "run_id": "benchmark",
        }
    )
    records = pd.DataFrame(
        {
            "record_id": [str(uuid.UUID(int=(1 << 64) + i)) for i in range(len(hits))],
            "response_id": np.array(response_ids, dtype=object)[np.arange(len(hits)) // page_size],
            "source": source,
            "external_id": [h["objectID"] for h in hits],
            "payload": [json.dumps(h) for h in hits],
            "fetched_at": pd.Timestamp(fetched_at) + pd.to_timedelta(np.arange(len(hits)) // page_size, unit="s"),
        }
    )
    return responses, records
