"""twin.io: typed access to store members, with errors naming the store and the member."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from twin import io
from twin.errors import InputError


@pytest.fixture
def root(tmp_path):
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    g.attrs.update({"kind": "test", "n": 3})
    sub = g.create_group("samples")
    sub.create_array("x", data=np.arange(6, dtype=np.int64).reshape(2, 3))
    return g


def test_members_and_attrs(root):
    assert isinstance(io.group(root, "samples"), zarr.Group)
    assert io.array(io.group(root, "samples"), "x").shape == (2, 3)
    np.testing.assert_array_equal(io.read(root, "samples/x"), [[0, 1, 2], [3, 4, 5]])
    assert io.attrs(root) == {"kind": "test", "n": 3}


def test_missing_or_wrong_kind_names_store_and_member(root):
    with pytest.raises(InputError, match=r"^my\.zarr: no 'y' in 'samples'$"):
        io.array(io.group(root, "samples"), "y", "my.zarr")
    with pytest.raises(InputError, match=r"^my\.zarr: 'samples' in '/' is not an array$"):
        io.array(root, "samples", "my.zarr")
    with pytest.raises(InputError, match=r"s\.zarr.*'x' in 'samples' is not a group"):
        io.group(io.group(root, "samples"), "x")
