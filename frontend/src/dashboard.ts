// The dashboard: cluster state and controls, node cards, the timeline, the task table with
// search and state filter, the task graph, a task's details and its output. A main-area
// widget in JupyterLab, and the whole page at <base>/nbray/dashboard (standalone.ts).
//
//   ClusterModel (status, nodes, summary; the event stream) ─▶ header, node cards
//   received(events) ─▶ throttled ─▶ GET tasks, graph, timeline (the server's fold)
//   row click ─▶ details; GET tasks/<id>/logs (again when the task prints)
import { Widget } from '@lumino/widgets';

import { graphCaption, graphFigure, IFigure, PLOT_CONFIG, timelineFigure } from './charts';
import { Event, IGraphRecord, ISegmentRecord, ITaskRecord, TASK_STATES } from './events';
import { formatDuration, h, stateColor } from './format';
import { LiveWidget } from './live';
import { ClusterModel } from './model';
import { nodeCard } from './nodes';
import { requestAPI } from './request';

export namespace NbrayDashboard {
  export interface IOptions {
    /** The data it shows (shared with the side panel in JupyterLab). */
    model: ClusterModel;
  }
}

interface ILogs {
  lines: { stream: string; text: string; truncated: boolean }[];
  dropped: number;
  missing?: string;
}

type Plotly = typeof import('plotly.js');

const RELOAD_MS = 1000; // at most one reload of tasks, graph and timeline per second
const TASK_ROWS = 300;

let plotly: Promise<Plotly> | null = null;

/** plotly.js, loaded on first use (a chunk of its own in JupyterLab). */
function loadPlotly(): Promise<Plotly> {
  if (!plotly) {
    plotly = import('plotly.js-dist-min') as Promise<Plotly>;
  }
  return plotly;
}

export class NbrayDashboard extends LiveWidget {
  constructor(options: NbrayDashboard.IOptions) {
    super();
    this.addClass('nbray-dashboard');
    this.id = 'nbray-dashboard-content';
    this.title.label = 'nbray Dashboard';
    this._model = options.model;
    this._model.changed.connect(this._renderCluster, this);
    this._model.received.connect(this._onEvents, this);
    this._build();
    this._renderCluster();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this._reloadTimer);
    window.clearInterval(this._tick);
    this._model.changed.disconnect(this._renderCluster, this);
    this._model.received.disconnect(this._onEvents, this);
    this._model.setActive(false, this);
    super.dispose();
  }

  /** Reload tasks, graph and timeline now (the visible parts only). */
  async reload(): Promise<void> {
    window.clearTimeout(this._reloadTimer);
    this._reloadTimer = 0;
    this._lastReload = Date.now();
    const filter = this._filter.value;
    const query = new URLSearchParams({ limit: String(TASK_ROWS) });
    if (this._search.value.trim()) {
      query.set('name', this._search.value.trim());
    }
    if (filter) {
      query.set('state', filter);
    }
    try {
      const [tasks, graph, timeline] = await Promise.all([
        requestAPI<{ tasks: ITaskRecord[] }>(this._model.path(`tasks?${query}`)),
        requestAPI<IGraphRecord>(this._model.path('graph')),
        requestAPI<{ segments: ISegmentRecord[] }>(this._model.path('timeline'))
      ]);
      this._tasks = tasks.tasks;
      this._renderTasks();
      this._renderDetails();
      await this._renderGraph(graph);
      await this._renderTimeline(timeline.segments);
    } catch (error) {
      this._model.error = `cannot reach the nbray server extension: ${(error as Error).message}`;
      this._renderCluster();
    }
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    void this._resizePlots();
  }

  protected setLive(active: boolean): void {
    this._model.setActive(active, this);
    window.clearInterval(this._tick);
    if (active) {
      void this.reload();
      // running tasks' bars grow, and their durations, without new events
      this._tick = window.setInterval(() => {
        if ((this._model.summary.counts.RUNNING ?? 0) > 0) {
          this._scheduleReload();
        }
        if (this._logsDirty) {
          void this._loadLogs();
        }
      }, 2000);
    }
  }

  private _build(): void {
    const node = this.node;
    const header = h('div', 'nbray-dash-header');
    const cluster = this._model.cluster;
    const title = cluster ? `nbray dashboard · kernel's cluster ${cluster}` : 'nbray dashboard';
    this._title = h('span', 'nbray-title', title);
    header.appendChild(this._title);
    this._state = h('span', 'nbray-state');
    header.appendChild(this._state);
    this._summary = h('span', 'nbray-dash-summary');
    header.appendChild(this._summary);
    this._live = h('span', 'nbray-live');
    header.appendChild(this._live);
    for (const name of ['start', 'stop', 'restart'] as const) {
      const label = name[0].toUpperCase() + name.slice(1);
      const button = h('button', `jp-mod-styled nbray-${name}`, label) as HTMLButtonElement;
      button.addEventListener('click', () => void this._action(name));
      if (cluster) {
        button.style.display = 'none'; // a kernel's cluster lives and goes with its kernel
      }
      header.appendChild(button);
      this._buttons[name] = button;
    }
    node.appendChild(header);
    this._error = h('div', 'nbray-error');
    node.appendChild(this._error);

    node.appendChild(h('h3', '', 'Nodes'));
    this._nodes = h('div', 'nbray-nodes nbray-dash-nodes');
    node.appendChild(this._nodes);

    node.appendChild(h('h3', '', 'Timeline (one row per worker)'));
    this._timelineEmpty = h(
      'div',
      'nbray-empty nbray-dash-timeline-empty',
      'No task has run yet: each worker gets a row here, with a bar per task it runs.'
    );
    node.appendChild(this._timelineEmpty);
    this._timeline = h('div', 'nbray-dash-timeline');
    node.appendChild(this._timeline);

    const split = h('div', 'nbray-dash-split');
    const left = h('div', 'nbray-dash-col');
    left.appendChild(h('h3', '', 'Tasks'));
    const filters = h('div', 'nbray-dash-filters');
    this._search = document.createElement('input');
    this._search.type = 'search';
    this._search.className = 'nbray-dash-search';
    this._search.placeholder = 'search by name or id';
    this._search.addEventListener('input', () => this._scheduleReload(250));
    this._filter = document.createElement('select');
    this._filter.className = 'nbray-dash-filter';
    for (const state of ['', ...TASK_STATES]) {
      const option = document.createElement('option');
      option.value = state;
      option.textContent = state || 'all states';
      this._filter.appendChild(option);
    }
    this._filter.addEventListener('change', () => void this.reload());
    filters.appendChild(this._search);
    filters.appendChild(this._filter);
    left.appendChild(filters);
    const table = h('table', 'nbray-dash-tasks');
    const head = h('thead', '');
    const row = h('tr', '');
    for (const title of ['name', 'state', 'worker', 'duration', 'id']) {
      row.appendChild(h('th', '', title));
    }
    head.appendChild(row);
    table.appendChild(head);
    this._rows = h('tbody', '');
    table.appendChild(this._rows);
    const scroller = h('div', 'nbray-dash-table');
    scroller.appendChild(table);
    left.appendChild(scroller);

    const right = h('div', 'nbray-dash-col');
    right.appendChild(h('h3', '', 'Task graph'));
    this._graphCaption = h('div', 'nbray-dash-graph-caption');
    right.appendChild(this._graphCaption);
    this._graph = h('div', 'nbray-dash-graph');
    right.appendChild(this._graph);
    right.appendChild(h('h3', '', 'Task details'));
    this._details = h('pre', 'nbray-dash-details', 'Click a task to see its details and output.');
    right.appendChild(this._details);
    right.appendChild(h('h3', '', 'Task output (kept while a panel or dashboard is open)'));
    this._logs = h('pre', 'nbray-dash-logs');
    right.appendChild(this._logs);
    split.appendChild(left);
    split.appendChild(right);
    node.appendChild(split);
  }

  private async _action(name: 'start' | 'stop' | 'restart'): Promise<void> {
    await this._model.action(name);
    await this.reload();
  }

  private _renderCluster(): void {
    const model = this._model;
    const state = model.status ? model.status.state : 'unknown';
    const owner = model.status?.path || model.status?.kernel_id?.slice(0, 8);
    if (model.cluster && owner) {
      this._title.textContent = `nbray dashboard · ${owner}'s cluster ${model.cluster}`;
    }
    this._state.textContent = state;
    this._state.className = `nbray-state nbray-state-${state}`;
    this._live.textContent = model.connected ? '● live' : '○ offline';
    this._buttons.start.toggleAttribute('disabled', state !== 'stopped');
    this._buttons.stop.toggleAttribute('disabled', state !== 'running');
    this._buttons.restart.toggleAttribute('disabled', state !== 'running' && state !== 'stopped');
    this._error.textContent = model.error;
    this._error.style.display = model.error ? '' : 'none';
    const counts = model.summary.counts;
    const parts = TASK_STATES.filter(s => counts[s]).map(s => `${counts[s]} ${s.toLowerCase()}`);
    parts.push(`${model.summary.rate.toFixed(1)} tasks/s`);
    this._summary.textContent = parts.join(' · ');

    const cards = model.nodes.map(n => nodeCard(n));
    for (const n of model.ssh ? model.ssh.nodes : []) {
      const gone = n.state !== 'ALIVE';
      const card = h('div', `nbray-node-card nbray-ssh-node${gone ? ' nbray-node-dead' : ''}`);
      card.appendChild(h('div', 'nbray-node-name', `${n.address} (SSH cluster)`));
      card.appendChild(h('div', 'nbray-node-note', gone ? `gone ${n.reason}` : 'alive'));
      cards.push(card);
    }
    this._nodes.replaceChildren(...cards);
    if (!cards.length) {
      this._nodes.appendChild(h('div', 'nbray-empty', 'No nodes: the cluster is not running.'));
    }
  }

  private _onEvents(sender: ClusterModel, events: Event[]): void {
    for (const event of events) {
      if (event.type === 'task' || event.type === 'cluster') {
        this._scheduleReload();
      } else if (event.type === 'log' && event.task_id === this._selected) {
        this._logsDirty = true;
      }
    }
    if (this._logsDirty) {
      void this._loadLogs();
    }
  }

  private _scheduleReload(delay?: number): void {
    if (this._reloadTimer) {
      return;
    }
    const wait = delay ?? Math.max(0, RELOAD_MS - (Date.now() - this._lastReload));
    this._reloadTimer = window.setTimeout(() => void this.reload(), wait);
  }

  private _renderTasks(): void {
    const now = Date.now() / 1000;
    const rows = this._tasks.map(task => {
      const tr = h('tr', task.task_id === this._selected ? 'nbray-dash-selected' : '');
      tr.dataset.taskId = task.task_id;
      tr.appendChild(h('td', '', task.name));
      const state = h('td', `nbray-dash-state nbray-dash-state-${task.state}`, task.state);
      state.style.color = stateColor(task.state);
      tr.appendChild(state);
      tr.appendChild(h('td', '', task.worker));
      const ran = task.started === null ? '' : formatDuration((task.ended ?? now) - task.started);
      tr.appendChild(h('td', '', ran));
      tr.appendChild(h('td', 'nbray-dash-id', task.task_id));
      tr.addEventListener('click', () => this._select(task.task_id));
      return tr;
    });
    this._rows.replaceChildren(...rows);
    if (!rows.length) {
      const empty = h('td', 'nbray-empty', 'No tasks match.');
      empty.setAttribute('colspan', '5');
      const tr = h('tr', 'nbray-dash-no-tasks');
      tr.appendChild(empty);
      this._rows.appendChild(tr);
    }
  }

  private _select(taskId: string): void {
    this._selected = taskId;
    for (const tr of Array.from(this._rows.children) as HTMLElement[]) {
      tr.classList.toggle('nbray-dash-selected', tr.dataset.taskId === taskId);
    }
    this._renderDetails();
    this._logs.replaceChildren();
    void this._loadLogs();
  }

  private _renderDetails(): void {
    const task = this._tasks.find(t => t.task_id === this._selected);
    if (!task) {
      return;
    }
    const lines = [
      `task ${task.task_id}  ${task.name}`,
      `state: ${task.state}${task.worker ? `  on worker ${task.worker}` : ''}`,
      `submitted: ${new Date(task.submitted * 1000).toLocaleTimeString()}`,
      `attempts: ${task.attempts}`
    ];
    if (task.parent) {
      lines.push(`submitted by task ${task.parent}`);
    }
    if (task.deps.length) {
      lines.push(`takes the results of tasks ${task.deps.join(', ')}`);
    }
    if (task.error) {
      lines.push('', 'error:', task.error);
    }
    this._details.textContent = lines.join('\n');
  }

  private async _loadLogs(): Promise<void> {
    if (!this._selected || this._logsLoading) {
      return;
    }
    const id = this._selected;
    this._logsDirty = false;
    this._logsLoading = true;
    let logs: ILogs;
    try {
      logs = await requestAPI<ILogs>(this._model.path(`tasks/${id}/logs`));
    } catch (error) {
      logs = { lines: [], dropped: 0, missing: (error as Error).message };
    } finally {
      this._logsLoading = false;
    }
    if (id !== this._selected) {
      return;
    }
    const parts: HTMLElement[] = [];
    if (logs.dropped) {
      parts.push(h('span', 'nbray-dash-note', `(${logs.dropped} earlier pieces not kept)\n`));
    }
    for (const piece of logs.lines) {
      const cut = piece.truncated ? ' …[cut]\n' : '';
      parts.push(h('span', `nbray-dash-${piece.stream}`, piece.text + cut));
    }
    if (!parts.length) {
      const note = logs.missing ? 'no output kept for this task' : 'no output';
      parts.push(h('span', 'nbray-dash-note', note));
    }
    this._logs.replaceChildren(...parts);
    this._logs.scrollTop = this._logs.scrollHeight;
  }

  private async _renderGraph(graph: IGraphRecord): Promise<void> {
    this._graphCaption.textContent = graphCaption(graph);
    this._graph.style.display = graph.total_tasks ? '' : 'none';
    this._graph.dataset.nodes = String(graph.nodes.length);
    this._graph.dataset.grouped = String(graph.grouped);
    if (graph.total_tasks) {
      await this._plot(this._graph, graphFigure(graph));
    }
  }

  private async _renderTimeline(segments: ISegmentRecord[]): Promise<void> {
    this._timelineEmpty.style.display = segments.length ? 'none' : '';
    this._timeline.style.display = segments.length ? '' : 'none';
    this._timeline.dataset.bars = String(segments.length);
    if (segments.length) {
      await this._plot(this._timeline, timelineFigure(segments));
    }
  }

  private async _plot(div: HTMLElement, figure: IFigure): Promise<void> {
    if (!this.isVisible) {
      return;
    }
    const Plotly = await loadPlotly();
    await Plotly.react(div, figure.data, figure.layout, PLOT_CONFIG);
  }

  private async _resizePlots(): Promise<void> {
    if (!plotly || !this.isVisible) {
      return;
    }
    const Plotly = await plotly;
    for (const div of [this._graph, this._timeline]) {
      if (div.classList.contains('js-plotly-plot') && div.style.display !== 'none') {
        Plotly.Plots.resize(div);
      }
    }
  }

  private _title!: HTMLElement;
  private _model: ClusterModel;
  private _tasks: ITaskRecord[] = [];
  private _selected = '';
  private _logsDirty = false;
  private _logsLoading = false;
  private _reloadTimer = 0;
  private _lastReload = 0;
  private _tick = 0;
  private _buttons: { [name: string]: HTMLButtonElement } = {};
  private _state!: HTMLElement;
  private _summary!: HTMLElement;
  private _live!: HTMLElement;
  private _error!: HTMLElement;
  private _nodes!: HTMLElement;
  private _timeline!: HTMLElement;
  private _timelineEmpty!: HTMLElement;
  private _search!: HTMLInputElement;
  private _filter!: HTMLSelectElement;
  private _rows!: HTMLElement;
  private _graph!: HTMLElement;
  private _graphCaption!: HTMLElement;
  private _details!: HTMLElement;
  private _logs!: HTMLElement;
}
