// The dashboard's charts, drawn with plotly.js like the notebook widgets: the task graph
// (the server's fold lays it out in layers and groups it when large) and the timeline.
//
//   GET nbray/api/graph    ─▶ graphFigure()    ─▶ Plotly.react(div)
//   GET nbray/api/timeline ─▶ timelineFigure() ─▶ Plotly.react(div)
import type { Config, Data, Layout } from 'plotly.js';

import { IGraphNodeRecord, IGraphRecord, ISegmentRecord, TASK_STATES } from './events';
import { formatDuration, stateColor } from './format';

/** A figure: what `Plotly.react` takes. */
export interface IFigure {
  data: Data[];
  layout: Partial<Layout>;
}

export const PLOT_CONFIG: Partial<Config> = {
  displaylogo: false,
  responsive: true,
  modeBarButtonsToRemove: ['lasso2d', 'select2d']
};

const LABELLED_NODES = 40; // an ungrouped graph labels its nodes up to this many

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The text beside a node: its function (and count) when the graph is small or grouped. */
export function nodeLabel(node: IGraphNodeRecord, graph: IGraphRecord): string {
  if (graph.grouped) {
    const failed = node.states.FAILED ?? 0;
    return `${node.name} ×${node.count}` + (failed ? ` (${failed} failed)` : '');
  }
  return graph.nodes.length <= LABELLED_NODES ? node.name : '';
}

function nodeHover(node: IGraphNodeRecord): string {
  const lines = [`<b>${escape(node.name)}</b> (${node.state})`];
  const time = node.duration === null ? 'not started' : formatDuration(node.duration);
  if (node.count > 1) {
    const states = Object.entries(node.states)
      .map(([s, c]) => `${c} ${s}`)
      .join(', ');
    lines.push(`${node.count} tasks, stage ${node.stage}: ${states}`, `mean run time ${time}`);
  } else {
    lines.push(`task ${node.key}`, `run time ${time}`);
  }
  if (node.workers.length) {
    lines.push(`worker ${node.workers.join(', ')}`);
  }
  if (node.error) {
    const last = node.error.trim().split('\n').pop() ?? '';
    lines.push(`error: ${escape(last.slice(0, 200))}`);
  }
  return lines.join('<br>');
}

/** How tall the graph is drawn: room for its fullest column, within bounds. */
export function graphHeight(graph: IGraphRecord): number {
  const perColumn = new Map<number, number>();
  for (const n of graph.nodes) {
    perColumn.set(n.x, (perColumn.get(n.x) ?? 0) + 1);
  }
  const fullest = Math.max(1, ...perColumn.values());
  return Math.max(260, Math.min(640, 60 + 34 * fullest));
}

/**
 * The task graph: columns by stage, one marker trace per state (its colour from the
 * contract), edges as one line trace; axes fixed around the layout so nothing runs off.
 */
export function graphFigure(graph: IGraphRecord): IFigure {
  const ex: (number | null)[] = [];
  const ey: (number | null)[] = [];
  for (const [a, b] of graph.edges) {
    const [na, nb] = [graph.nodes[a], graph.nodes[b]];
    ex.push(na.x, nb.x, null);
    ey.push(na.y, nb.y, null);
  }
  const data: Data[] = [
    {
      type: 'scatter',
      mode: 'lines',
      x: ex,
      y: ey,
      line: { color: '#9ca3af', width: 1 },
      hoverinfo: 'skip',
      showlegend: false
    }
  ];
  const biggest = Math.max(1, ...graph.nodes.map(n => n.count));
  for (const state of TASK_STATES) {
    const nodes = graph.nodes.filter(n => n.state === state);
    if (!nodes.length) {
      continue;
    }
    data.push({
      type: 'scatter',
      mode: 'text+markers',
      name: state,
      x: nodes.map(n => n.x),
      y: nodes.map(n => n.y),
      text: nodes.map(n => nodeLabel(n, graph)),
      textposition: 'top center',
      textfont: { size: 11 },
      hovertext: nodes.map(nodeHover),
      hoverinfo: 'text',
      marker: {
        color: stateColor(state),
        size: nodes.map(n => (graph.grouped ? 12 + 22 * Math.sqrt(n.count / biggest) : 14)),
        line: {
          // failures inside a group show as a thick red outline
          color: nodes.map(n => (n.states.FAILED ? stateColor('FAILED') : '#374151')),
          width: nodes.map(n => (n.states.FAILED ? 3 : 1))
        }
      }
    } as Data);
  }
  const lastColumn = Math.max(0, ...graph.nodes.map(n => n.x));
  return {
    data,
    layout: {
      height: graphHeight(graph),
      margin: { l: 20, r: 20, t: 10, b: 10 },
      xaxis: { visible: false, range: [-0.6, lastColumn + 0.6], fixedrange: false },
      yaxis: { visible: false, range: [-0.62, 0.62] },
      legend: { orientation: 'h', y: -0.02 },
      plot_bgcolor: 'rgba(0,0,0,0)',
      paper_bgcolor: 'rgba(0,0,0,0)',
      showlegend: true
    }
  };
}

/** One sentence over the graph: how many tasks, and how they were grouped. */
export function graphCaption(graph: IGraphRecord): string {
  if (!graph.total_tasks) {
    return 'No tasks yet: the graph shows them, and their dependencies, once submitted.';
  }
  const grouped = graph.grouped
    ? `, grouped into ${graph.nodes.length} nodes by function and stage`
    : '';
  return `${graph.total_tasks} tasks${grouped}; ${graph.edges.length} dependencies.`;
}

/** The timeline: one row per worker, one bar per attempt, coloured by how it ended. */
export function timelineFigure(segments: ISegmentRecord[]): IFigure {
  const workers = [...new Set(segments.map(s => s.worker))].sort();
  const data: Data[] = [];
  for (const state of TASK_STATES) {
    const bars = segments.filter(s => s.state === state);
    if (!bars.length) {
      continue;
    }
    data.push({
      type: 'bar',
      orientation: 'h',
      name: state,
      y: bars.map(s => `worker ${s.worker}`),
      base: bars.map(s => new Date(s.start * 1000).toISOString()),
      x: bars.map(s => Math.max(1, (s.end - s.start) * 1000)),
      marker: { color: stateColor(state) },
      hovertext: bars.map(
        s => `${escape(s.name)} (${s.state})<br>${formatDuration(s.end - s.start)} on ${s.worker}`
      ),
      hoverinfo: 'text'
    } as Data);
  }
  return {
    data,
    layout: {
      barmode: 'overlay',
      height: Math.max(160, 50 + 26 * workers.length),
      margin: { l: 110, r: 20, t: 10, b: 40 },
      xaxis: { type: 'date', title: { text: '' } },
      yaxis: {
        categoryorder: 'array',
        categoryarray: workers.map(w => `worker ${w}`),
        automargin: true
      },
      legend: { orientation: 'h', y: -0.25 },
      plot_bgcolor: 'rgba(0,0,0,0)',
      paper_bgcolor: 'rgba(0,0,0,0)'
    }
  };
}
