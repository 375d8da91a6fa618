"""Segment service: create/get/list/count/sample/delete, in_segment() nesting and cycles,
erased contacts never members."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from campaigns.errors import ConflictError, InputError, NotFoundError
from campaigns.segments import (
    count_segment,
    create_segment,
    delete_segment,
    get_segment,
    list_segments,
    members_query,
    sample_segment,
)
from campaigns.store.models import Campaign, Contact, Segment
from campaigns.timespec import utcnow


def test_create_count_and_sample_a_segment(app, shop):
    with app.session() as s:
        create_segment(s, app.settings, "shanghai", 'attributes.city = "Shanghai"', "city")
    with app.session() as s:
        assert count_segment(s, "shanghai", app.settings) == 2
        sample = sample_segment(s, "shanghai", app.settings, limit=1)
        assert [c.email for c in sample] == ["a@example.com"]
        assert [seg.name for seg in list_segments(s)] == ["shanghai"]
        assert get_segment(s, "shanghai").description == "city"


def test_a_bad_filter_or_a_duplicate_name_is_refused_at_create_time(app, shop):
    with app.session() as s:
        create_segment(s, app.settings, "vip", 'tags contains "vip"')
    with app.session() as s, pytest.raises(ConflictError, match="already exists"):
        create_segment(s, app.settings, "vip", "consent.sms")
    with app.session() as s, pytest.raises(InputError, match=r"column 1: unknown field 'rfm\.x'"):
        create_segment(s, app.settings, "bad", "rfm.x = 1")
    with app.session() as s, pytest.raises(InputError, match="segment name"):
        create_segment(s, app.settings, "bad name; drop", "consent.sms")
    with app.session() as s:
        assert [seg.name for seg in list_segments(s)] == ["vip"]


def test_members_exclude_erased_contacts(app, shop):
    with app.session() as s:
        create_segment(s, app.settings, "vip", 'tags contains "vip"')
        s.get(Contact, shop.ids["B"]).erased_at = utcnow()
    with app.session() as s:
        ids = s.scalars(members_query(s, "vip", app.settings)).all()
    assert shop.names(ids) == {"A", "P"}


def test_in_segment_nests_and_combines(app, shop):
    with app.session() as s:
        create_segment(s, app.settings, "vip", 'tags contains "vip"')
        create_segment(s, app.settings, "vip_sms", 'in_segment("vip") and consent.sms')
        create_segment(s, app.settings, "not_vip_buyers", 'not in_segment("vip") and purchases.count > 0')
    with app.session() as s:
        seg = get_segment(s, "vip_sms")
        assert shop.names(s.scalars(members_query(s, seg, app.settings))) == {"A", "P"}
        assert shop.names(s.scalars(members_query(s, "not_vip_buyers", app.settings))) == set("CDEFGHIJ")


def test_a_cycle_between_segments_is_a_clear_error(app, shop):
    with app.session() as s:
        create_segment(s, app.settings, "a", "consent.sms")
        create_segment(s, app.settings, "b", 'in_segment("a")')
        # a cycle can only come from editing stored definitions; simulate one
        s.scalar(select(Segment).where(Segment.name == "a")).definition = 'in_segment("b") or consent.email'
    with app.session() as s, pytest.raises(InputError, match=r"cycle: b -> a -> b"):
        s.scalars(members_query(s, "b", app.settings)).all()


def test_a_segment_cannot_refer_to_itself(app, shop):
    with app.session() as s, pytest.raises(InputError, match="cannot contain itself"):
        create_segment(s, app.settings, "me", 'in_segment("me")')


def test_unknown_segment_is_not_found(app, shop):
    with app.session() as s, pytest.raises(NotFoundError, match="no segment 'ghost'"):
        members_query(s, "ghost", app.settings)


def test_delete_refuses_a_segment_in_use_by_a_campaign_or_another_segment(app, shop):
    with app.session() as s:
        vip = create_segment(s, app.settings, "vip", 'tags contains "vip"')
        create_segment(s, app.settings, "vip_sms", 'in_segment("vip") and consent.sms')
        create_segment(s, app.settings, "spare", "consent.sms")
        s.add(Campaign(name="spring", channel="sms", segment_id=vip.id, schedule_kind="manual"))
    with app.session() as s, pytest.raises(ConflictError, match="used by campaign\\(s\\) spring"):
        delete_segment(s, "vip")
    with app.session() as s:
        s.delete(s.scalar(select(Campaign)))
    with app.session() as s, pytest.raises(ConflictError, match="used by segment\\(s\\) vip_sms"):
        delete_segment(s, "vip")
    with app.session() as s:
        delete_segment(s, "spare")
        delete_segment(s, "vip_sms")
        delete_segment(s, "vip")
        assert list_segments(s) == []
