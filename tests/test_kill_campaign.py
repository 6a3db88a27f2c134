"""The short form of the kill campaign (tests/campaign.py; the long form is
bench/kill_campaign.py): five kills -9 of `maild run`'s intake, worker, sender or all, about 200
mails over SMTP, IMAP, the pipe and the web form, the relay flipping between up, 4xx, 5xx and down —
and afterwards every answered mail stored exactly once, every ticket consistent, every
acknowledgement delivered or recorded dead, none twice under two Message-IDs."""

from __future__ import annotations

from pathlib import Path

from tests.campaign import Campaign


def test_a_short_kill_campaign_keeps_every_promise(tmp_path: Path) -> None:
    report = Campaign(tmp_path, kills=5, mails=200, seed=13, settle_timeout=300).run()
    print("\n".join(report.lines()))
    assert report.violations == []
    counts = report.counts
    assert counts["kills"] == 5
    # Every channel was used, and every mail sent was answered on it in the end.
    for channel in ("smtp", "imap", "pipe", "web"):
        assert counts[f"answered {channel}"] > 0, counts
    assert counts["answered, distinct mails"] == counts["mails sent"] == counts["tickets"]
    assert counts["lost"] == counts["duplicates"] == 0
    assert counts["delivered twice under two Message-IDs"] == 0
