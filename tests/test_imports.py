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


# Each imports TensorFlow only on the TensorFlow backend: the devices and
# MirroredStrategy's tf.data feed, a Ray task's thread pools, the peers
# `make bench` measures the kit against (a tf.data pipeline), and Grad-CAM's
# gradient (each backend its own autodiff). On JAX and
# PyTorch no command loads it (tests/test_backends.py runs them and looks).
ON_TENSORFLOW_ONLY = {
    "competition.training.devices",
    "competition.training.tfdata",
    "competition.cluster.tasks",
    "competition.devtools.bench.peers",
    "competition.evaluation.gradcam",
}


def test_tensorflow_is_imported_only_by_the_modules_that_run_on_it():
    assert import_graph.importers(REPO, "tensorflow") == ON_TENSORFLOW_ONLY
    assert import_graph.importers(REPO, "keras") > {"competition.augment.layers"}


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
