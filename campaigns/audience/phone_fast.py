"""phonenumbers' parse and validity, the same answers with less of the library's general work.

A contacts import parses and validates every row's phone number, and phonenumbers does
both in pure Python (about 40 us a number, most of an import's row on the worker that
validates it). Two shortcuts, each answering what the library answers
(tests/contacts/test_phone_fast.py compares them over every calling code and region):

- `parse`: a number written as '+' and digits (E.164, as `contacts export` writes and
  most shops store), with spaces or hyphens at most, needs none of the library's search for
  a number in free text, RFC 3966 context, extension or vanity-letter handling, or its
  international-prefix and default-region attempts; it goes straight to the calling code
  and then through the library's own national-prefix stripping and length checks. Any
  other text, and any number the shortcut cannot take cleanly (an unknown calling code,
  too short or long), goes to `phonenumbers.parse`, errors and all. 28 -> 8 us a number.
- `is_valid`: for a calling code that several regions share (+1: the United States,
  Canada and twenty Caribbean regions; +7, +44, ...), `is_valid_number` first finds the
  region by testing the number against each region's type patterns until one recognises
  it, then tests it against that same region's patterns again. When the region was found
  that way the second answer is already known (the region is listed under the number's
  calling code, so its calling code matches): it is returned instead of worked out twice.
  A region found by its leading digits, or the only region of its calling code, still goes
  through `is_valid_number_for_region`. +1: 11.6 -> 5.1 us a number.

Both lean on a few of the library's private helpers (stable since its first port of
libphonenumber); without any of them, each is the library's whole function.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

_UTIL = phonenumbers.phonenumberutil
# The library's own type test, which `is_valid_number` runs (through
# `_region_code_for_number_from_list` and `is_valid_number_for_region`).
_TYPE_OF = getattr(_UTIL, "_number_type_helper", None)
_PRIVATE = ("_extract_country_code", "_maybe_strip_national_prefix_carrier_code", "_test_number_length",
            "_set_italian_leading_zeros_for_phone_number", "ValidationResult", "_MIN_LENGTH_FOR_NSN",
            "_MAX_LENGTH_FOR_NSN")
_PARSE_SHORTCUT = all(hasattr(_UTIL, name) for name in _PRIVATE)
_E164 = re.compile(r"\+[1-9][0-9]{3,16}")
_SEPARATORS = str.maketrans("", "", " -")


def parse(text: str, region: str | None) -> PhoneNumber:
    """What `phonenumbers.parse(text, region)` returns (or raises)."""
    digits = text.translate(_SEPARATORS) if (" " in text or "-" in text) else text
    if not _PARSE_SHORTCUT or _E164.fullmatch(digits) is None:
        return phonenumbers.parse(text, region)
    code, national = _UTIL._extract_country_code(digits[1:])
    if code == 0 or len(national) < _UTIL._MIN_LENGTH_FOR_NSN:
        return phonenumbers.parse(text, region)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, phonenumbers.region_code_for_country_code(code))
    if metadata is None:
        return phonenumbers.parse(text, region)
    _carrier, stripped, _ = _UTIL._maybe_strip_national_prefix_carrier_code(national, metadata)
    if _UTIL._test_number_length(stripped, metadata) not in (
            _UTIL.ValidationResult.TOO_SHORT, _UTIL.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
            _UTIL.ValidationResult.INVALID_LENGTH):
        national = stripped
    if not _UTIL._MIN_LENGTH_FOR_NSN <= len(national) <= _UTIL._MAX_LENGTH_FOR_NSN:
        return phonenumbers.parse(text, region)
    number = PhoneNumber(country_code=code)
    _UTIL._set_italian_leading_zeros_for_phone_number(national, number)
    number.national_number = int(national)
    return number


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
