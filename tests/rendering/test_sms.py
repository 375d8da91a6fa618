"""SMS: GSM-7 vs UCS-2, segment counts, the opt-out line, links shortened to click URLs."""

from __future__ import annotations

import re

import pytest

from campaigns.messages import links
from campaigns.messages.link_registry import link_url
from campaigns.messages.rendering import RenderedSms, RenderError, render_delivery
from campaigns.messages.sms_text import encoding_for, segment_count, units, with_opt_out
from campaigns.messages.templates_store import MessageTemplate, load_template
from tests.rendering.conftest import add_contact, make_campaign, make_delivery


@pytest.mark.parametrize(("text", "encoding", "segments"), [
    ("", "GSM-7", 0),
    ("a" * 160, "GSM-7", 1),
    ("a" * 161, "GSM-7", 2),
    ("a" * 306, "GSM-7", 2),
    ("a" * 307, "GSM-7", 3),
    ("€" * 80, "GSM-7", 1),      # extension characters take two septets
    ("€" * 81, "GSM-7", 2),
    ("[]{}~^|\\" * 10, "GSM-7", 1),
    ("Ça coute 5£ à Zürich", "GSM-7", 1),  # Ç, £, à, ü are in the basic table
    ("Ça coûte", "UCS-2", 1),  # û is not
    ("ç" * 10, "UCS-2", 1),       # lower-case ç is not
    ("你好" * 35, "UCS-2", 1),
    ("你好" * 36, "UCS-2", 2),    # 72 units > 70: two parts of 67
    ("x" * 134 + "🎉", "UCS-2", 3),  # the emoji is two UTF-16 units: 136 units > 134
])
def test_encoding_and_segments_follow_gsm_03_38(text, encoding, segments):
    assert encoding_for(text) == encoding
    assert segment_count(text) == segments


def test_units_count_extension_chars_twice_and_astral_chars_as_two():
    assert units("a€", "GSM-7") == 3
    assert units("a🎉", "UCS-2") == 3


def test_opt_out_line_is_appended_once():
    assert with_opt_out("Sale!", "Reply STOP to opt out") == "Sale!\nReply STOP to opt out"
    assert with_opt_out("Sale! reply stop to opt out", "Reply STOP to opt out") == "Sale! reply stop to opt out"


def test_flash_sale_sms_renders_with_short_signed_link_and_opt_out(rapp):
    settings = rapp.settings
    tmpl = load_template(settings, "flash_sale")
    assert tmpl.channel == "sms"
    with rapp.session() as s:
        camp, run = make_campaign(s, channel="sms", utm={"utm_source": "sms"})
        for name in ("Ann Lee", "Zoë Ng", None):
            c = add_contact(s, None, name, phone="+14155550100")
            d = make_delivery(s, run, c)
            out = render_delivery(s, settings, tmpl, contact=c, delivery_id=d.id, campaign=camp)
            assert isinstance(out, RenderedSms) and out.to == "+14155550100"
            assert out.body.endswith("\nReply STOP to opt out")
            assert "shop.example.com" not in out.body
            m = re.search(r"https://t\.example\.net/c/([0-9a-z]+)/([0-9a-z]+)/([\w-]+)", out.body)
            ref = links.verify_click(settings, *m.groups())
            assert ref is not None and ref.delivery_id == d.id
            assert link_url(s, ref.link_id) == "https://shop.example.com/flash?utm_source=sms"
            expected = "UCS-2" if name == "Zoë Ng" else "GSM-7"  # ë is not GSM-7
            assert out.encoding == expected
            assert out.segments == segment_count(out.body)


def test_transactional_sms_gets_no_opt_out_line_and_missing_phone_fails(rapp):
    tmpl = load_template(rapp.settings, "flash_sale")
    with rapp.session() as s:
        camp, run = make_campaign(s, channel="sms", marketing=False)
        c = add_contact(s, None, "Ann", phone="+14155550100")
        out = render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=make_delivery(s, run, c).id, campaign=camp)
        assert "STOP" not in out.body
        nophone = add_contact(s, "x@example.com", "X")
        with pytest.raises(RenderError, match="no phone number"):
            render_delivery(s, rapp.settings, tmpl, contact=nophone, delivery_id=make_delivery(s, run, nophone).id)


def test_sms_with_emoji_is_ucs2_and_counts_67_unit_segments(rapp):
    tmpl = MessageTemplate("emoji", "sms", None, None, None, "🎉 " + "x" * 100, "h-emoji", rapp.settings.base_dir)
    with rapp.session() as s:
        c = add_contact(s, None, "Ann", phone="+14155550100")
        out = render_delivery(s, rapp.settings, tmpl, contact=c, delivery_id=0)
    assert out.encoding == "UCS-2"
    assert out.segments == 2  # 103 + 1 + 21 units
