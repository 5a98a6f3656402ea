from core.fingerprints import canonical_url, fingerprint, is_web_url, normalized_title


def test_canonical_url_drops_tracking_case_www_slash_and_fragment():
    assert canonical_url("HTTP://WWW.InvoiceBolt.io/pricing/?utm_source=hn&b=2&a=1#top") == \
        "https://invoicebolt.io/pricing?a=1&b=2"
    assert canonical_url("https://invoicebolt.io") == canonical_url("https://invoicebolt.io/?ref=producthunt")


def test_normalized_title_strips_site_prefixes_and_punctuation():
    assert normalized_title("Show HN: InvoiceBolt – Invoicing, for freelancers!") == "invoicebolt invoicing for freelancers"


def test_same_launch_same_fingerprint_different_launch_different():
    a = fingerprint(canonical_url("https://shiplog.dev/?utm_campaign=x"), "Show HN: ShipLog")
    b = fingerprint(canonical_url("https://www.shiplog.dev"), "shiplog")
    c = fingerprint(canonical_url("https://shiplog.dev"), "ShipLog 2")
    assert a == b != c


def test_web_url_validation():
    assert is_web_url("https://a.io/x")
    assert not is_web_url("ftp://a.io")
    assert not is_web_url("/relative/path")
    assert not is_web_url("https://localhost")
