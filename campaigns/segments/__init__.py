"""Segments: the filter language, RFM, lifecycle, loyalty and customer value.

Other rooms import from here only: `compile_where`, `members_query`, `profiles` (with
`population` when asking in chunks), `PROSPECT` (the stage of who never bought),
`CustomerProfile` and the segment service functions.
"""

from campaigns.segments.customers import PROSPECT, CustomerProfile, distribution, population, profiles
from campaigns.segments.service import (
    compile_where,
    count_segment,
    create_segment,
    delete_segment,
    get_segment,
    list_segments,
    members_query,
    sample_segment,
    segment_usage,
)

__all__ = [
    "PROSPECT", "CustomerProfile", "compile_where", "count_segment", "create_segment", "delete_segment", "distribution",
    "get_segment", "list_segments", "members_query", "population", "profiles", "sample_segment", "segment_usage",
]
