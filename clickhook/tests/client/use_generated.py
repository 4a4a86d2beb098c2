"""Uses a Python client generated from clickhook's live OpenAPI document (openapi-python-client)
the way an integration would: create a campaign, enroll a prospect, record an email, click its
link as a browser, and list the click. Run by clickhook/tests/api/openapi.rs.

    python3 use_generated.py BASE_URL API_KEY GENERATED_DIR
"""

import sys
import time
import urllib.request

base, key, generated = sys.argv[1:4]
sys.path.insert(0, generated)

from clickhook_client import AuthenticatedClient  # noqa: E402
from clickhook_client.api.campaigns import post_rest_v2_campaigns  # noqa: E402
from clickhook_client.api.clicks import get_rest_v2_clicks  # noqa: E402
from clickhook_client.api.emails import post_rest_v2_campaigns_id_emails  # noqa: E402
from clickhook_client.api.prospects import post_rest_v1_add_prospects_campaign  # noqa: E402
from clickhook_client.models import (  # noqa: E402
    AddCampaign,
    CampaignBody,
    CampaignRef,
    CampaignView,
    ClickView,
    SendBody,
    SentEmail,
    StepBody,
)

client = AuthenticatedClient(base_url=base, token=key, prefix="", auth_header_name="x-api-key")

campaign = post_rest_v2_campaigns.sync(
    client=client,
    body=CampaignBody(
        name="Generated client",
        status="RUNNING",
        mailboxes=["jared.dunn@piedpiper.com"],
        steps=[StepBody(type_="EMAIL", track_links=True)],
    ),
)
assert isinstance(campaign, CampaignView), campaign
assert campaign.status == "RUNNING" and campaign.steps[0].track_links, campaign

enrolled = post_rest_v1_add_prospects_campaign.sync_detailed(
    client=client,
    body=AddCampaign(
        campaign=CampaignRef(campaign_id=campaign.id),
        prospects=[{"email": "erlich@bachmanity.com", "first_name": "Erlich"}],
    ),
)
assert enrolled.status_code == 200, enrolled

sent = post_rest_v2_campaigns_id_emails.sync(
    campaign.id,
    client=client,
    body=SendBody(
        prospect_email="erlich@bachmanity.com",
        step=1,
        sent_at="2025-03-20T14:32:34+0100",
        html='<a href="https://piedpiper.com/pricing">pricing</a>',
    ),
)
assert isinstance(sent, SentEmail), sent
assert sent.links[0].url == "https://piedpiper.com/pricing", sent
tracked = sent.links[0].tracked_url
assert tracked.startswith(base + "/c/") and tracked in sent.html, sent


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


browser = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"
request = urllib.request.Request(tracked, headers={"User-Agent": browser})
try:
    urllib.request.build_opener(NoRedirect).open(request)
    raise AssertionError("a tracked link redirects")
except urllib.error.HTTPError as answer:
    assert answer.code == 302 and answer.headers["Location"] == "https://piedpiper.com/pricing", answer

deadline = time.time() + 20
while True:
    clicks = get_rest_v2_clicks.sync(client=client, campaign_id=campaign.id)
    assert isinstance(clicks, list) and all(isinstance(c, ClickView) for c in clicks), clicks
    if clicks and clicks[0].verdict != "pending":
        break
    assert time.time() < deadline, clicks
    time.sleep(0.2)
assert len(clicks) == 1, clicks
click = clicks[0]
assert (click.url, click.email_id, click.verdict) == ("https://piedpiper.com/pricing", sent.email_id, "human"), click
print("generated client: campaign", campaign.id, "email", sent.email_id, "click", click.id, click.verdict)
