"""Cell analysis, %%remote option parsing, result comparison and the comparison chart:
pure functions, no kernel and no cluster."""

from __future__ import annotations

import numpy as np
import pytest
from IPython.core.error import UsageError

from nbray.magics.analysis import analyse_cell
from nbray.magics.compare import equal_results, parse_label
from nbray.magics.remote import parse_line
from nbray.magics.routing import _Budget, drop_note
from nbray.widgets.comparison import ComparisonRun, TimeComparison


def free(src: str) -> tuple[str, ...]:
    return analyse_cell(src).free


def test_reads_before_assignment_are_free_and_later_reads_are_not() -> None:
    names = analyse_cell("y = x + 1\nz = y * 2\nz")
    assert names.free == ("x",)
    assert names.assigned == ("y", "z")
    assert names.has_value


def test_augmented_assignment_reads_the_name_first() -> None:
    assert free("total += step") == ("total", "step")
    assert analyse_cell("total += step").assigned == ("total",)


def test_self_referencing_assignment_reads_the_old_value() -> None:
    assert free("x = x + 1") == ("x",)


def test_function_bodies_read_globals_not_bound_in_the_cell() -> None:
    src = "def f(a):\n    return a * scale + offset\noffset = 1\nf(2)"
    names = analyse_cell(src)
    assert names.free == ("scale",)  # offset is bound by the cell before f runs
    assert names.assigned == ("f", "offset")


def test_comprehension_iterable_runs_now_and_its_body_reads_globals() -> None:
    assert free("out = [v * k for v in data]") == ("data", "k")
    assert "v" not in free("out = [v * k for v in data]")


def test_lambda_defaults_and_bodies() -> None:
    assert free("g = lambda a, b=base: a + b + c") == ("base", "c")


def test_imports_loops_with_and_except_bind_names() -> None:
    src = (
        "import numpy as np\nfrom os import path\n"
        "for i in range(n):\n    acc = i\n"
        "with open(p) as fh:\n    pass\n"
        "try:\n    pass\nexcept ValueError as err:\n    pass\n"
        "np.zeros(i)\npath.join(acc)"
    )
    names = analyse_cell(src)
    assert names.free == ("range", "n", "open", "p", "ValueError")
    assert names.assigned == ("np", "path", "i", "acc", "fh", "err")


def test_global_declared_in_a_function_counts_as_assigned() -> None:
    names = analyse_cell("def bump():\n    global counter\n    counter += 1\nbump()")
    assert "counter" in names.assigned
    assert "counter" in names.free  # read before the cell assigns it


def test_walrus_and_match_bind() -> None:
    assert "m" in analyse_cell("if (m := f()):\n    pass").assigned
    names = analyse_cell("match cmd:\n    case [x, *rest]:\n        y = x\n")
    assert names.free == ("cmd",)
    assert {"x", "rest", "y"} <= set(names.assigned)


def test_trailing_semicolon_hides_the_value() -> None:
    assert not analyse_cell("x = 1\nx;").has_value
    assert not analyse_cell("x = 1").has_value


def test_syntax_error_names_the_cell_file() -> None:
    with pytest.raises(SyntaxError) as info:
        analyse_cell("x = (", "Cell-7")
    assert info.value.filename == "Cell-7"


def test_parse_line_options() -> None:
    opts = parse_line(
        "--cpus 2 --gpus 0.5 --resources db=1,mem=2 --retries 1 --timeout 30 -o a,b "
        "--each item in [1, 2, 3] --async"
    )
    assert opts.cpus == 2 and opts.gpus == 0.5
    assert opts.resources == {"db": 1.0, "mem": 2.0}
    assert opts.retries == 1 and opts.timeout == 30
    assert opts.outputs == ("a", "b")
    assert (opts.each_name, opts.each_expr) == ("item", "[1, 2, 3]")
    assert opts.is_async


@pytest.mark.parametrize(
    "line, needle",
    [
        ("--bogus", "unrecognized arguments: --bogus"),
        ("--cpus lots", "invalid float value"),
        ("--cpus -1", "cannot be negative"),
        ("--timeout 0", "--timeout takes a number of seconds"),
        ("--resources db", "--resources takes K=V pairs"),
        ("-o 1x", "-o takes variable names"),
        ("--each x", "--each takes NAME in EXPR"),
    ],
)
def test_parse_line_mistakes_raise_usage_error_with_usage(line: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_line(line)
    assert needle in str(info.value)
    assert "Usage:\n%%remote [--cpus N]" in str(info.value)


def test_compare_label() -> None:
    assert parse_label("") == ""
    assert parse_label("-l 'numpy baseline'") == "numpy baseline"
    with pytest.raises(UsageError, match="Usage:"):
        parse_label("--frobnicate")


def test_equal_results() -> None:
    assert equal_results([np.arange(3), {"a": 1}], [np.arange(3), {"a": 1}])
    assert not equal_results(np.arange(3), np.arange(1, 4))
    assert not equal_results(1, 1.0)  # different types
    assert equal_results((1, "x"), (1, "x"))


def test_time_comparison_summary_and_chart() -> None:
    cmp = TimeComparison()
    cmp.add(ComparisonRun("serial", 4.0, 3.9, 1.0, 4.2, 4, True))
    cmp.add(ComparisonRun("numpy", 1.0, 1.0, 0.5, None, 4, False))
    cmp.add(ComparisonRun("serial", 4.0, 3.9, 2.0, 4.2, 4, True))  # same label: replaced
    lines = cmp.summary().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("numpy:") and "RESULTS DIFFER" in lines[0]
    assert "speedup 2.00x on 4 CPUs (50% parallel efficiency); results equal" in lines[1]
    bundle = cmp._repr_mimebundle_()
    fig = bundle["application/vnd.plotly.v1+json"]
    assert [t["name"] for t in fig["data"]] == ["kernel (serial)", "cluster"]
    assert fig["data"][1]["y"] == [0.5, 2.0]


def test_output_budget_spends_then_refuses() -> None:
    b = _Budget()
    assert b.take(1000)
    assert not b.take(10**9)
    assert "12 lines (3.4 kB)" in drop_note(12, 3400)
