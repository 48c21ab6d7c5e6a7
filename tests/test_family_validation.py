"""--val-source family: one whole acquisition family held out, counted by hand on a manifest and on the Kermany
folder."""

import os

import pytest

from pneumocam.core.errors import DataError
from pneumocam.data.discover import discover
from pneumocam.data.split import choose_validation, family_from_name

from .conftest import KERMANY


def _manifest(tmp_path, rows):
    lines = ["path,label,patient_id,family"]
    for name, label, patient, family in rows:
        (tmp_path / name).touch()
        lines.append(f"{name},{label},{patient},{family}")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return discover(path)


@pytest.fixture
def three_families(tmp_path):
    """NORMAL: family A 4 films (patients a1, a2: 2 each), family B 8 films (b1-b8: 1 each); PNEUMONIA: family C,
    12 films (patients p1-p6: 2 each)."""
    rows = [(f"a{p}-{k}.png", "NORMAL", f"a{p}", "A") for p in (1, 2) for k in (1, 2)]
    rows += [(f"b{p}.png", "NORMAL", f"b{p}", "B") for p in range(1, 9)]
    rows += [(f"p{p}-{k}.png", "PNEUMONIA", f"p{p}", "C") for p in range(1, 7) for k in (1, 2)]
    return _manifest(tmp_path, rows)


def test_the_smallest_normal_family_is_held_out_whole_with_a_matched_share_of_pneumonia(three_families):
    train, val, plan = choose_validation(three_families, "family", seed=0)
    names = lambda part, label: sorted(os.path.basename(s.path) for s in part if s.label == label)  # noqa: E731
    # A holds 4 of the 12 NORMAL films: a third. A third of the 12 PNEUMONIA films is 4: two whole patients.
    assert names(val, 0) == ["a1-1.png", "a1-2.png", "a2-1.png", "a2-2.png"]
    assert len(names(val, 1)) == 4 and len({n.split("-")[0] for n in names(val, 1)}) == 2
    assert names(train, 0) == [f"b{p}.png" for p in range(1, 9)] and len(names(train, 1)) == 8
    assert not {s.patient_id for s in train} & {s.patient_id for s in val}
    assert (plan.source, plan.family, plan.n_train, plan.n_val, plan.shared_patients) == ("family", "A", 16, 8, 0)


def test_a_named_family_is_held_out_instead(three_families):
    train, val, plan = choose_validation(three_families, "family", seed=0, val_family="B")
    # B holds 8 of 12 NORMAL films: two thirds, so 8 of the 12 PNEUMONIA films (four patients) go with it
    assert sorted(s.family for s in val if s.label == 0) == ["B"] * 8 and sum(s.label for s in val) == 8
    assert {s.family for s in train if s.label == 0} == {"A"} and plan.family == "B"
    with pytest.raises(DataError, match="no NORMAL films of that family"):
        choose_validation(three_families, "family", val_family="Z")


def test_one_family_is_refused_with_the_reason(tmp_path):
    rows = [(f"n{p}.png", "NORMAL", f"n{p}", "A") for p in range(4)]
    rows += [(f"p{p}.png", "PNEUMONIA", f"p{p}", "C") for p in range(4)]
    with pytest.raises(DataError, match="at least two acquisition families"):
        choose_validation(_manifest(tmp_path, rows), "family")


def test_kermany_names_give_their_families():
    assert family_from_name("NORMAL2-IM-1423-0001.jpeg") == "NORMAL2-IM"
    assert family_from_name("IM-0115-0001.jpeg") == "IM"
    assert family_from_name("person1_bacteria_1.jpeg") == "person"
    assert family_from_name("scan.png") is None


@pytest.mark.shared_data
def test_on_kermany_the_im_normal_films_are_validation(tmp_path):
    if not KERMANY.is_dir():
        pytest.skip("needs ../shared/data/kermany224")
    normal = os.listdir(KERMANY / "train" / "NORMAL")
    im = [n for n in normal if n.startswith("IM-")]
    second = [n for n in normal if n.startswith("NORMAL2-IM-")]
    assert len(im) + len(second) == len(normal) and len(im) < len(second)  # IM is the smaller series
    train, val, plan = choose_validation(discover(KERMANY), "family", seed=0)
    assert plan.family == "IM"
    assert sorted(os.path.basename(s.path) for s in val if s.label == 0) == sorted(im)
    assert {os.path.basename(s.path) for s in train if s.label == 0} == set(second)
    pneumonia = len(os.listdir(KERMANY / "train" / "PNEUMONIA"))
    share = sum(s.label for s in val) / pneumonia  # matched to IM's share of NORMAL, within one patient's films
    assert abs(share - len(im) / len(normal)) < 0.01 and plan.shared_patients == 0
