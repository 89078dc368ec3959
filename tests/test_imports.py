"""One direction through the code: the package's import graph, built from
its source (module level, inside functions, under TYPE_CHECKING), has no
circle, and no module imports one of a higher layer (the stages never the
configuration, the configuration never the pipeline or the commands)."""

from __future__ import annotations

import import_graph
from helpers import REPO


def test_the_import_graph_has_no_circle():
    edges = import_graph.graph(REPO)
    assert len(edges) > 90 and sum(map(len, edges.values())) > 300  # the whole package was read
    assert import_graph.circles(edges) == []


def test_no_module_imports_a_higher_layer():
    edges = import_graph.graph(REPO)
    assert import_graph.climbs(edges) == []
    below_config = [
        m for m in edges if import_graph.layer_of(m) < import_graph.layer_of("competition.config")
    ]
    assert "competition.data.cache.build" in below_config
    assert not [
        m for m in below_config if any(t.startswith("competition.config") for t in edges[m])
    ]


def test_the_checker_finds_a_circle_and_a_climb(tmp_path):
    package = tmp_path / "competition"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "a.py").write_text("def f():\n    from competition.data import b\n")
    (package / "data" / "b.py").write_text("from competition.data.a import f\n")
    type_only = "if TYPE_CHECKING:\n    from competition.config import X\n"
    (package / "data" / "c.py").write_text(type_only)
    (package / "config.py").write_text("")
    edges = import_graph.graph(tmp_path)
    assert import_graph.circles(edges) == [["competition.data.a", "competition.data.b"]]
    assert import_graph.climbs(edges) == [("competition.data.c", "competition.config")]
