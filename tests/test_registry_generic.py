"""``mikata.registry.Registry``: the one name -> spec table behind methods, issue types and checks."""

from dataclasses import dataclass

import pytest

from mikata.errors import ChoiceError
from mikata.registry import Registry


@dataclass(frozen=True)
class Toy:
    name: str
    warm: bool = False


def test_specs_keep_registration_order_and_filter_on_attributes():
    r = Registry[Toy]("toy")
    for name, warm in (("c", True), ("a", False), ("b", True)):
        r.register(Toy(name, warm))
    assert r.names() == ("c", "a", "b") and r.names(warm=True) == ("c", "b") and len(r) == 3
    assert r.specs() == (Toy("c", True), Toy("a"), Toy("b", True)) and "a" in r and "z" not in r


def test_a_taken_name_is_refused_unless_replaced():
    r = Registry[Toy]("toy")
    r.register(Toy("a"))
    with pytest.raises(ValueError, match="toy 'a' is already registered"):
        r.register(Toy("a", True))
    r.register(Toy("a", True), replace=True)
    assert r.get("a").warm and r.names() == ("a",)


def test_an_unknown_name_lists_every_choice():
    r = Registry[Toy]("toy")
    r.register(Toy("red"))
    r.register(Toy("blue"))
    with pytest.raises(ChoiceError) as e:
        r.get("green")
    assert "green" in str(e.value) and "red" in str(e.value) and "blue" in str(e.value)


def test_registered_for_a_block_is_gone_after_it_even_when_it_raised():
    r = Registry[Toy]("toy")
    with pytest.raises(RuntimeError):
        with r.registered(Toy("tmp")) as spec:
            assert r.get("tmp") is spec
            raise RuntimeError("boom")
    assert "tmp" not in r
    r.unregister("never there")  # no error


def test_methods_issue_types_and_checks_are_each_one_registry():
    from mikata.analysis import issue_registry
    from mikata.attribution import registry
    from mikata.evaluation import check_registry

    tables = (registry._METHODS, issue_registry._TYPES, check_registry._CHECKS)
    assert all(isinstance(t, Registry) for t in tables)
    assert registry.names() == registry._METHODS.names() and "gradcam" in registry.names()
    assert issue_registry.issue_type_names() == tuple(issue_registry.default_thresholds())
    assert check_registry.check_names() == tuple(s.name for s in check_registry.check_specs())
    with pytest.raises(ChoiceError):
        check_registry.check_spec("no-such-check")
