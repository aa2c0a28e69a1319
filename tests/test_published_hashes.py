"""The SHA-256 table of hashes.py against MMSA's published values, entry by entry.

The values below are copied from the publication itself, not from hashes.py: MMSA's README
(github.com/thuiar/MMSA, README.md, section "2. Datasets", block "SHA-256 for feature files", L97-105 with
the hashes on L100-104; read at commit a94e65d07fa1ae0d44e552390074b29b0898edfd). docs/mmsa.md §3 lists
the same table with its source.
"""

import pytest

from emodistill.data.hashes import PUBLISHED_SHA256

MMSA_README_SHA256 = {
    "MOSI/Processed/unaligned_50.pkl": "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",  # L100
    "MOSI/Processed/aligned_50.pkl": "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",  # L101
    "MOSEI/Processed/unaligned_50.pkl": "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",  # L102
    "MOSEI/Processed/aligned_50.pkl": "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",  # L103
    "SIMS/Processed/unaligned_39.pkl": "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f",  # L104
}


def test_table_has_exactly_the_published_files():
    assert sorted(PUBLISHED_SHA256) == sorted(MMSA_README_SHA256)


@pytest.mark.parametrize("key", sorted(MMSA_README_SHA256))
def test_table_entry_equals_published_value(key):
    assert PUBLISHED_SHA256.get(key) == MMSA_README_SHA256[key], (
        f"hashes.py PUBLISHED_SHA256[{key!r}] = {PUBLISHED_SHA256.get(key)!r}, "
        f"MMSA's README publishes {MMSA_README_SHA256[key]!r}"
    )
