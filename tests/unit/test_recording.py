import json

import httpx

from core.platform.http import RecordingTransport, SnapshotTransport, SourceClient


def test_recorded_snapshots_replay_and_never_keep_secrets(tmp_path):
    def live(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "real-token", "data": {"ok": True}})

    recorder = RecordingTransport(tmp_path, inner=httpx.MockTransport(live))
    with SourceClient("reddit", recorder, sleep=lambda s: None) as client:
        client.get("https://www.reddit.com/api/v1/access_token", params={"api_key": "k-123", "q": "x"})
    [saved] = recorder.saved
    text = saved.read_text()
    assert "real-token" not in text and "k-123" not in text
    with SourceClient("reddit", SnapshotTransport(tmp_path), sleep=lambda s: None) as client:
        replayed = client.get("https://www.reddit.com/api/v1/access_token", params={"q": "x", "api_key": "other"})
    assert json.loads(replayed.body)["data"] == {"ok": True}


def test_github_spent_quota_403_is_retried(tmp_path):
    answers = iter(
        [
            httpx.Response(403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}),
            httpx.Response(200, json={"items": []}),
        ]
    )
    waits: list[float] = []
    with SourceClient("github", httpx.MockTransport(lambda r: next(answers)), sleep=waits.append) as client:
        assert client.get("https://api.github.com/search/repositories").status_code == 200
    assert client.requests_made == 2


def test_a_corrupted_snapshot_fails_its_request_naming_the_file(tmp_path):
    import pytest

    from core.platform.http import SourceHTTPError

    recorder = RecordingTransport(tmp_path, inner=httpx.MockTransport(lambda request: httpx.Response(200, json=[1])))
    with SourceClient("hackernews", recorder, sleep=lambda s: None) as client:
        client.get("https://hn.algolia.com/api/v1/search", params={"q": "x"})
    [saved] = recorder.saved
    saved.write_text(saved.read_text()[:40], encoding="utf-8")  # cut off mid-file, as a bad merge might
    client = SourceClient("hackernews", SnapshotTransport(tmp_path), sleep=lambda s: None)
    with client, pytest.raises(SourceHTTPError) as failed:
        client.get("https://hn.algolia.com/api/v1/search", params={"q": "x"})
    assert f"snapshot {saved} (for GET https://hn.algolia.com/api/v1/search?q=x)" in failed.value.reason
    assert "JSONDecodeError" in failed.value.reason and "ventureloop discovery record" in failed.value.reason
