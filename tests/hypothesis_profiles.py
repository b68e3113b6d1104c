"""The Hypothesis settings of the fuzz tests, by profile: ``dev`` (the default: a quick
100 inputs per reader, so local runs stay fast) or ``ci`` (2,000 per reader, the issue-14
goal), chosen by the ``FKDBENCH_HYPOTHESIS_PROFILE`` environment variable (``.ci/run``
sets ``ci``).

The profiles are registered but not loaded, so that only the fuzz tests that use
:data:`FUZZ` change size; no example database, so they never write ``.hypothesis/`` into
the checkout.

:data:`JSON_SCALARS` and :data:`JSON_VALUES` are the arbitrary JSON the readers' fuzz
tests feed where a field's value goes.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILE_VARIABLE = "FKDBENCH_HYPOTHESIS_PROFILE"
PROFILE_EXAMPLES = {"dev": 100, "ci": 2000}
# Writing a file per input is slow next to Hypothesis' own budget; that is the point.
_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
for _name, _examples in PROFILE_EXAMPLES.items():
    settings.register_profile(f"fkdbench-{_name}", max_examples=_examples, **_COMMON)

PROFILE = os.environ.get(PROFILE_VARIABLE, "dev")
if PROFILE not in PROFILE_EXAMPLES:
    raise ValueError(
        f"{PROFILE_VARIABLE}={PROFILE!r}: unknown profile; known: {', '.join(PROFILE_EXAMPLES)}"
    )
# The decorator of every fuzz test: @FUZZ above @given.
FUZZ = settings.get_profile(f"fkdbench-{PROFILE}")


# Any JSON scalar (numbers past float and int64 included), and any JSON value built of them.
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
