"""`phonenumbers.is_valid_number` without its second pass over the same patterns.

For a calling code that several regions share (+1: the United States, Canada and twenty
Caribbean regions; +7, +44, ...), `is_valid_number` first finds the region by testing the
number against each region's type patterns until one recognises it, then tests the number
against that same region's patterns again. When the region was found that way the second
answer is already known (the region is listed under the number's calling code, so its
calling code matches): `is_valid` returns it instead of working it out twice. A region
found by its leading digits, or the only region of its calling code, still goes through
`is_valid_number_for_region`. The answers are the library's own:
tests/contacts/test_phone_validity.py compares them over numbers of every calling code.
About half of a +1 number's validation (the larger part of a contacts import's row).
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

# The library's own type test, which `is_valid_number` runs (through
# `_region_code_for_number_from_list` and `is_valid_number_for_region`); private, so looked
# up once here, and without it `is_valid` is the library's whole function.
_TYPE_OF = getattr(phonenumbers.phonenumberutil, "_number_type_helper", None)


def is_valid(number: PhoneNumber) -> bool:
    """What `phonenumbers.is_valid_number(number)` answers."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(number.country_code or 0)
    if _TYPE_OF is None or not regions or len(regions) == 1:
        return bool(phonenumbers.is_valid_number(number))
    national = phonenumbers.national_significant_number(number)
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if re.match(metadata.leading_digits, national):
                return bool(phonenumbers.is_valid_number_for_region(number, region))
        elif _TYPE_OF(national, metadata) != PhoneNumberType.UNKNOWN:
            return True  # the test is_valid_number_for_region(number, region) would repeat
    return False
