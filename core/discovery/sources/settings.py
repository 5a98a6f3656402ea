"""Every variable the connectors read from the mapping they are given (see .env.example).

The assets hand connectors a mapping built by the discovery resource, never os.environ; these
lists are what that resource forwards. tests/unit/sources/test_settings.py checks them against
the connectors' code, so a new variable cannot be forgotten here."""

# Credentials: forwarded as dg.EnvVar, so the Dagster UI shows their names, never their values.
SOURCE_SECRETS = (
    "GITHUB_TOKEN",
    "REDDIT_CLIENT_ID",
    "REDDIT_CLIENT_SECRET",
    "PRODUCT_HUNT_TOKEN",
    "X_BEARER_TOKEN",
    "BRAVE_SEARCH_API_KEY",
)

# Paging, queries and files: plain values, visible in the UI.
SOURCE_SETTINGS = (
    "FEEDS_MAX_PAGES",
    "FREELANCER_MAX_PAGES",
    "FREELANCER_PAGE_SIZE",
    "FREELANCER_QUERY",
    "GITHUB_CREATED_SINCE",
    "GITHUB_MAX_PAGES",
    "GITHUB_PER_PAGE",
    "HACKERNEWS_FRONT_PAGE_ITEMS",
    "HACKERNEWS_HITS_PER_PAGE",
    "HACKERNEWS_MAX_PAGES",
    "PRODUCTHUNT_MAX_PAGES",
    "PRODUCTHUNT_PAGE_SIZE",
    "REDDIT_LIMIT",
    "REDDIT_MAX_PAGES",
    "REDDIT_SUBREDDITS",
    "REDDIT_USER_AGENT",
    "VENTURELOOP_FEEDS_FILE",
    "WEB_SEARCH_MAX_PAGES",
    "WEB_SEARCH_QUERIES",
    "X_MAX_PAGES",
    "X_MAX_RESULTS",
    "X_QUERY",
)
