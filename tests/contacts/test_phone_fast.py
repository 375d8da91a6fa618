"""`phone_fast.parse` and `phone_fast.is_valid` answer what `phonenumbers.parse` and
`phonenumbers.is_valid_number` answer: over every region's example numbers of every type
(valid ones) written in E.164 and nationally, random digits after every calling code
(mostly invalid ones, some with spaces and hyphens) and the shared +1 plan."""

import phonenumbers
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from campaigns.audience import phone_fast
from campaigns.audience.contacts import normalise_phone
from campaigns.errors import InputError

CODES = sorted(COUNTRY_CODE_TO_REGION_CODE)
SHARED = [code for code in CODES if len(COUNTRY_CODE_TO_REGION_CODE[code]) > 1]


def test_every_regions_example_numbers_of_every_type():
    examples = [number for region in phonenumbers.SUPPORTED_REGIONS for kind in range(11)
                if (number := phonenumbers.example_number_for_type(region, kind)) is not None]
    assert len(examples) > 1000
    assert [phone_fast.is_valid(n) for n in examples] == [phonenumbers.is_valid_number(n) for n in examples]
    assert sum(map(phone_fast.is_valid, examples)) > 1000  # they are valid, and said to be


def _parsed(parse, text, region):
    """The number, or the kind of error (NumberParseException's error_type)."""
    try:
        return parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return ("error", exc.error_type)


def test_every_regions_example_numbers_parse_as_the_library_parses_them():
    examples = [(region, number) for region in phonenumbers.SUPPORTED_REGIONS for kind in range(11)
                if (number := phonenumbers.example_number_for_type(region, kind)) is not None]
    for region, number in examples:
        for text in (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
                     phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
                     phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)):
            for default in (region, "US", None):
                assert _parsed(phone_fast.parse, text, default) == _parsed(phonenumbers.parse, text, default), (text, default)


@hsettings(max_examples=4000, deadline=None)
@given(code=st.sampled_from([*CODES, 0, 28, 999]), digits=st.text("0123456789", min_size=0, max_size=18),
       spacing=st.lists(st.sampled_from(["", " ", "-", "  ", "--"]), min_size=3, max_size=3),
       region=st.sampled_from([None, "US", "GB", "IT", "FR", "ZZ"]))
def test_random_numbers_after_every_calling_code(code, digits, spacing, region):
    cut = len(digits) // 2
    text = f"{spacing[0]}+{code}{spacing[1]}{digits[:cut]}{spacing[2]}{digits[cut:]}"
    ours, theirs = _parsed(phone_fast.parse, text, region), _parsed(phonenumbers.parse, text, region)
    assert ours == theirs, text
    if not isinstance(theirs, tuple):
        assert phone_fast.is_valid(ours) == phonenumbers.is_valid_number(theirs), text


@hsettings(max_examples=3000, deadline=None)
@given(code=st.sampled_from(SHARED), area=st.integers(100, 999), rest=st.integers(0, 10**7 - 1))
def test_numbers_of_shared_calling_codes(code, area, rest):
    """+1 (NANPA), +7, +44, ...: the regions found by their type patterns or leading digits."""
    text = f"+{code}{area}{rest:07d}"
    number = phone_fast.parse(text, None)
    assert number == phonenumbers.parse(text, None)
    assert phone_fast.is_valid(number) == phonenumbers.is_valid_number(number)


def test_the_import_still_refuses_a_number_no_region_has():
    assert normalise_phone("+1 212 555 0142", "US") == "+12125550142"
    assert normalise_phone("(415) 555-0100", "US") == "+14155550100"
    for bad in ("+1 099 555 0100", "+1 212 155 0100", "+44 20 1234"):
        try:
            normalise_phone(bad, "US")
        except InputError:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_the_installed_library_has_what_the_shortcuts_use():
    """Without its private helpers each function is the library's whole one: still right, but
    an import would lose the time it saves; a phonenumbers release that drops them shows here."""
    assert phone_fast._PARSE_SHORTCUT and phone_fast._TYPE_OF is not None
