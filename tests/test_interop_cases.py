"""Issue 11's "Done when": every file users handed in (tests/fixtures/interop/cases/, copied from the
shared case folder, plus the snnTorch cases made by ../make_snntorch_cases.py) lives on as a test."""

from pathlib import Path

CASES = Path(__file__).parent / "fixtures" / "interop" / "cases"


def test_every_interop_case_is_named_by_a_test():
    cases = {p.name.split(".")[0] for p in CASES.iterdir() if p.suffix != ".md"}
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != Path(__file__).name)
    assert len(cases) >= 17
    assert sorted(name for name in cases if name not in tests) == []
