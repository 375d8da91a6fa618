"""`phone_validity.is_valid` answers what `phonenumbers.is_valid_number` answers: over every
region's example numbers of every type (valid ones), random digits after every calling code
(mostly invalid ones) and the shared +1 plan, where the shortcut applies."""

import phonenumbers
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from campaigns.audience import phone_validity
from campaigns.audience.contacts import normalise_phone
from campaigns.errors import InputError

CODES = sorted(COUNTRY_CODE_TO_REGION_CODE)
SHARED = [code for code in CODES if len(COUNTRY_CODE_TO_REGION_CODE[code]) > 1]


def test_every_regions_example_numbers_of_every_type():
    examples = [number for region in phonenumbers.SUPPORTED_REGIONS for kind in range(11)
                if (number := phonenumbers.example_number_for_type(region, kind)) is not None]
    assert len(examples) > 1000
    assert [phone_validity.is_valid(n) for n in examples] == [phonenumbers.is_valid_number(n) for n in examples]
    assert sum(map(phone_validity.is_valid, examples)) > 1000  # they are valid, and said to be


@hsettings(max_examples=3000, deadline=None)
@given(code=st.sampled_from(CODES), digits=st.text("0123456789", min_size=2, max_size=14))
def test_random_numbers_after_every_calling_code(code, digits):
    try:
        number = phonenumbers.parse(f"+{code}{digits}", None)
    except phonenumbers.NumberParseException:
        return
    assert phone_validity.is_valid(number) == phonenumbers.is_valid_number(number)


@hsettings(max_examples=3000, deadline=None)
@given(code=st.sampled_from(SHARED), area=st.integers(100, 999), rest=st.integers(0, 10**7 - 1))
def test_numbers_of_shared_calling_codes(code, area, rest):
    """+1 (NANPA), +7, +44, ...: the regions found by their type patterns or leading digits."""
    number = phonenumbers.parse(f"+{code}{area}{rest:07d}", None)
    assert phone_validity.is_valid(number) == phonenumbers.is_valid_number(number)


def test_the_import_still_refuses_a_number_no_region_has():
    assert normalise_phone("+1 212 555 0142", "US") == "+12125550142"
    assert normalise_phone("(415) 555-0100", "US") == "+14155550100"
    for bad in ("+1 099 555 0100", "+1 212 155 0100", "+44 20 1234"):
        try:
            normalise_phone(bad, "US")
        except InputError:
            continue
        raise AssertionError(f"{bad} was accepted")
