"""TimeComparison: how much faster the cluster ran a cell than the kernel alone.

    %%compare ──▶ ComparisonRun (kernel and cluster wall/CPU time, CPUs, results equal?)
        ──▶ TimeComparison.add ──▶ a plotly bar chart (one group per label) and one text
            line per run: speedup and parallel efficiency (speedup / the cluster's CPUs)

In a notebook the chart renders through plotly's JupyterLab renderer; elsewhere the
text stands alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["ComparisonRun", "TimeComparison"]


class ComparisonRun(NamedTuple):
    """One cell timed in the kernel (serially) and on the cluster."""

    label: str
    kernel_wall: float
    kernel_cpu: float
    cluster_wall: float
    cluster_cpu: float | None  # kernel + workers; None when the workers' CPU is unknown
    cpus: float
    equal: bool | None  # None: nothing to compare
    # tasks and actor calls the cell submitted (None: not counted); 0 means both runs ran
    # the same code in the kernel, and a speedup would be noise
    remote_calls: int | None = None
    # one-time costs paid before timing, e.g. "imports numpy" (said in the summary)
    warmed: str = ""

    @property
    def no_remote_work(self) -> bool:
        return self.remote_calls == 0

    @property
    def speedup(self) -> float:
        return self.kernel_wall / self.cluster_wall if self.cluster_wall > 0 else float("inf")

    def headline(self) -> str:
        """The few words under the cluster's bar: speedup and efficiency, or why not."""
        if self.no_remote_work:
            return "no remote work"
        return f"{self.speedup:.2f}x, {self.efficiency:.0%} eff."

    @property
    def efficiency(self) -> float:
        return self.speedup / self.cpus if self.cpus else 0.0

    def summary(self) -> str:
        cpu = f"{self.cluster_cpu:.2f} s CPU" if self.cluster_cpu is not None else "CPU n/a"
        check = {True: "results equal", False: "RESULTS DIFFER", None: "no result to compare"}
        times = (
            f"{self.label}: kernel {self.kernel_wall:.2f} s wall / {self.kernel_cpu:.2f} s CPU, "
            f"cluster {self.cluster_wall:.2f} s wall / {cpu}"
        )
        warmed = f" ({self.warmed} before timing both runs)" if self.warmed else ""
        if self.no_remote_work:
            return (
                f"{times}; no remote work: the cell submitted no task or actor call, so both "
                f"runs ran in the kernel and there is no speedup to report{warmed}; "
                f"{check[self.equal]}"
            )
        return (
            f"{times}; speedup {self.speedup:.2f}x on {self.cpus:g} CPUs "
            f"({self.efficiency:.0%} parallel efficiency){warmed}; {check[self.equal]}"
        )


class TimeComparison:
    """Kernel-versus-cluster timings of one or more cells, as a chart and as text.

    Example::

        cmp = TimeComparison()
        cmp.add(ComparisonRun("8 tasks", 4.0, 4.0, 1.1, 4.3, 4, True))
        cmp          # a bar chart in a notebook, the summary line elsewhere
        print(cmp.summary())
    """

    def __init__(self, runs: list[ComparisonRun] | None = None) -> None:
        self.runs: list[ComparisonRun] = list(runs or [])

    def add(self, run: ComparisonRun) -> None:
        """Add a run; a run with a label already present replaces it."""
        self.runs = [r for r in self.runs if r.label != run.label] + [run]

    def summary(self) -> str:
        """One line per run."""
        return "\n".join(r.summary() for r in self.runs)

    def figure(self) -> Any:
        """A plotly ``Figure``: wall time in the kernel and on the cluster, per label."""
        import plotly.graph_objects as go

        labels = [r.label for r in self.runs]
        fig = go.Figure(
            [
                go.Bar(
                    name="kernel (serial)",
                    x=labels,
                    y=[r.kernel_wall for r in self.runs],
                    customdata=[[r.kernel_cpu] for r in self.runs],
                    hovertemplate="%{y:.2f} s wall, %{customdata[0]:.2f} s CPU<extra></extra>",
                ),
                go.Bar(
                    name="cluster",
                    x=labels,
                    y=[r.cluster_wall for r in self.runs],
                    text=[r.headline() for r in self.runs],
                    textposition="outside",
                    customdata=[[r.cluster_cpu or 0.0] for r in self.runs],
                    hovertemplate="%{y:.2f} s wall, %{customdata[0]:.2f} s CPU<extra></extra>",
                ),
            ]
        )
        fig.update_layout(
            barmode="group",
            title="Kernel vs cluster: wall time (lower is better)",
            yaxis_title="seconds",
            height=320,
            margin={"l": 50, "r": 20, "t": 50, "b": 40},
        )
        return fig

    def picture(self) -> str:
        """A static HTML picture of the chart and its summary lines: the
        output's ``text/html``, which nbconvert's HTML, nbviewer and GitHub show."""
        from .pictures import comparison_picture

        return comparison_picture(self.runs)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": self.summary()}
        if self.runs:
            import json

            bundle["application/vnd.plotly.v1+json"] = json.loads(self.figure().to_json())
            bundle["text/html"] = self.picture()
        return bundle

    def __repr__(self) -> str:
        return self.summary() or "TimeComparison()"
