// The side panel: cluster state and controls, node cards, tasks by state, failures, the
// clusters kernels started for themselves (owner, engine, node cards, a link to their
// dashboard view), and the SSH cluster of `nbray up` (a form for its fields, per-host
// progress, node liveness).
import { TASK_STATES } from './events';
import { LiveWidget } from './live';
import { h, stateColor } from './format';
import { ClusterModel, IClusterEntry, ISshStatus } from './model';
import { kernelShare, nodeCard } from './nodes';
import { dashboardURL, rayDashboardURL } from './request';

export namespace NbrayPanel {
  export interface IOptions {
    /** The data the panel shows; the panel turns its live updates on while visible. */
    model: ClusterModel;
    /** Open the dashboard (in a main-area tab). */
    openDashboard: () => void;
    /** Insert a ready code snippet in the active notebook. */
    insertSnippet: () => void;
  }
}

export class NbrayPanel extends LiveWidget {
  constructor(options: NbrayPanel.IOptions) {
    super();
    this.addClass('nbray-panel');
    this.id = 'nbray-panel';
    this.title.caption = 'nbray cluster';
    this._model = options.model;
    this._options = options;
    this._model.changed.connect(this._render, this);
    this._build();
    this._render();
  }

  dispose(): void {
    this._model.changed.disconnect(this._render, this);
    this._model.setActive(false, this);
    super.dispose();
  }

  protected setLive(live: boolean): void {
    this._model.setActive(live, this);
  }

  private _build(): void {
    const node = this.node;
    const header = h('div', 'nbray-header');
    header.appendChild(h('span', 'nbray-title', 'nbray'));
    this._state = h('span', 'nbray-state');
    header.appendChild(this._state);
    this._live = h('span', 'nbray-live');
    header.appendChild(this._live);
    node.appendChild(header);

    const controls = h('div', 'nbray-controls');
    this._cpus = document.createElement('input');
    this._cpus.type = 'number';
    this._cpus.min = '1';
    this._cpus.placeholder = 'CPUs';
    this._cpus.title = 'CPUs for start/restart (empty: all)';
    this._cpus.className = 'nbray-cpus';
    for (const name of ['start', 'stop', 'restart'] as const) {
      const button = h(
        'button',
        `jp-mod-styled nbray-${name}`,
        name[0].toUpperCase() + name.slice(1)
      );
      button.addEventListener('click', () => {
        const cpus = parseFloat(this._cpus.value);
        void this._model.action(name, name === 'stop' || isNaN(cpus) ? {} : { num_cpus: cpus });
      });
      controls.appendChild(button);
      this._buttons[name] = button as HTMLButtonElement;
    }
    controls.appendChild(this._cpus);
    node.appendChild(controls);

    this._error = h('div', 'nbray-error');
    node.appendChild(this._error);
    this._resources = h('div', 'nbray-resources');
    node.appendChild(this._resources);
    this._kernels = h('div', 'nbray-kernels');
    node.appendChild(this._kernels);

    node.appendChild(h('h3', '', 'Nodes'));
    this._nodes = h('div', 'nbray-nodes');
    node.appendChild(this._nodes);

    node.appendChild(h('h3', '', 'Tasks'));
    this._counts = h('div', 'nbray-counts');
    node.appendChild(this._counts);
    this._rate = h('div', 'nbray-rate');
    node.appendChild(this._rate);

    node.appendChild(h('h3', '', 'Latest failures'));
    this._failures = h('div', 'nbray-failures');
    node.appendChild(this._failures);

    const heading = h('h3', '', "Kernels' own clusters");
    heading.title = "Started by a kernel's nbray.init(num_cpus=...) or init(engine='ray')";
    node.appendChild(heading);
    this._clusters = h('div', 'nbray-clusters');
    node.appendChild(this._clusters);

    node.appendChild(h('h3', '', 'SSH cluster (nbray up)'));
    node.appendChild(this._buildSshForm());
    this._ssh = h('div', 'nbray-ssh');
    node.appendChild(this._ssh);

    const actions = h('div', 'nbray-actions');
    const dash = h('button', 'jp-mod-styled jp-mod-accept nbray-open-dashboard', 'Open dashboard');
    dash.addEventListener('click', () => this._options.openDashboard());
    const snippet = h('button', 'jp-mod-styled nbray-insert-snippet', 'Insert snippet');
    snippet.title = 'Insert a ready nbray example in the active notebook';
    snippet.addEventListener('click', () => this._options.insertSnippet());
    actions.appendChild(dash);
    actions.appendChild(snippet);
    node.appendChild(actions);
  }

  /** The cluster file's main fields; Up posts them to nbray/api/ssh/up. */
  private _buildSshForm(): HTMLElement {
    const form = h('div', 'nbray-ssh-form');
    const fields: [string, string, string][] = [
      ['head', 'head host', '10.0.0.5'],
      ['workers', 'worker hosts (comma-separated)', '10.0.0.6, 10.0.0.7'],
      ['user', 'SSH user', 'ubuntu'],
      ['identity_file', 'SSH key', '~/.ssh/id_ed25519'],
      ['python', 'Python on the hosts', 'python3']
    ];
    for (const [name, label, example] of fields) {
      // the label above the field, the example inside it: a long placeholder was cut off
      const row = h('label', 'nbray-ssh-field');
      row.appendChild(h('span', 'nbray-ssh-label', label));
      const input = document.createElement('input');
      input.className = `nbray-ssh-${name}`;
      input.placeholder = example;
      input.title = `${label}, e.g. ${example}`;
      row.appendChild(input);
      form.appendChild(row);
      this._sshInputs[name] = input;
    }
    const install = document.createElement('label');
    this._sshInstall = document.createElement('input');
    this._sshInstall.type = 'checkbox';
    this._sshInstall.className = 'nbray-ssh-install';
    install.appendChild(this._sshInstall);
    install.appendChild(document.createTextNode(' install nbray[ray] into a venv'));
    form.appendChild(install);
    const buttons = h('div', 'nbray-controls');
    const up = h('button', 'jp-mod-styled nbray-ssh-up', 'Up') as HTMLButtonElement;
    up.addEventListener('click', () => void this._model.sshAction('up', this._sshFields()));
    const down = h('button', 'jp-mod-styled nbray-ssh-down', 'Down') as HTMLButtonElement;
    down.addEventListener('click', () => void this._model.sshAction('down'));
    buttons.appendChild(up);
    buttons.appendChild(down);
    this._buttons.sshUp = up;
    this._buttons.sshDown = down;
    form.appendChild(buttons);
    return form;
  }

  private _sshFields(): object {
    const value = (name: string) => this._sshInputs[name].value.trim();
    const ssh: { [key: string]: string } = {};
    for (const key of ['user', 'identity_file']) {
      if (value(key)) {
        ssh[key] = value(key);
      }
    }
    const fields: { [key: string]: unknown } = {
      head: { host: value('head') },
      workers: value('workers')
        .split(',')
        .map(w => w.trim())
        .filter(w => w)
        .map(host => ({ host })),
      ssh,
      install: this._sshInstall.checked
    };
    if (value('python')) {
      fields.python = value('python');
    }
    return fields;
  }

  private _renderSsh(ssh: ISshStatus | null): void {
    const state = ssh ? ssh.state : 'down';
    this._buttons.sshUp.toggleAttribute('disabled', state !== 'down' && state !== 'failed');
    this._buttons.sshDown.toggleAttribute('disabled', state !== 'up' && state !== 'failed');
    const children: HTMLElement[] = [];
    const head = h('div', 'nbray-ssh-state');
    head.appendChild(h('span', `nbray-ssh-badge nbray-state-${state}`, state));
    if (ssh && ssh.name) {
      head.appendChild(
        document.createTextNode(` ${ssh.name}${ssh.address ? ` at ${ssh.address}` : ''}`)
      );
    }
    children.push(head);
    for (const host of ssh ? ssh.hosts : []) {
      const row = h('div', 'nbray-ssh-host', `${host.host}: ${host.step} ${host.status}`);
      row.classList.toggle('nbray-ssh-failed', host.status === 'FAILED');
      children.push(row);
    }
    if (ssh && ssh.error) {
      children.push(h('div', 'nbray-error', ssh.error));
    }
    for (const n of ssh ? ssh.nodes : []) {
      const gone = n.state !== 'ALIVE';
      const card = h('div', `nbray-ssh-node${gone ? ' nbray-node-dead' : ''}`);
      card.appendChild(h('div', 'nbray-node-name', `${n.address} · ${gone ? 'gone' : 'alive'}`));
      if (gone && n.reason) {
        card.appendChild(h('div', 'nbray-node-note', n.reason));
      }
      children.push(card);
    }
    this._ssh.replaceChildren(...children);
  }

  private _render(): void {
    const model = this._model;
    const status = model.status;
    const state = status ? status.state : 'unknown';
    this._state.textContent = state;
    this._state.className = `nbray-state nbray-state-${state}`;
    this._live.textContent = model.connected ? '● live' : '○ offline';
    this._live.title = model.connected ? 'receiving events' : 'not connected';
    this._buttons.start.toggleAttribute('disabled', state !== 'stopped');
    this._buttons.stop.toggleAttribute('disabled', state !== 'running');
    this._buttons.restart.toggleAttribute('disabled', state !== 'running' && state !== 'stopped');
    this._error.textContent = model.error;
    this._error.style.display = model.error ? '' : 'none';

    if (status && status.resources) {
      const res = Object.entries(status.resources)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
      this._resources.textContent = `${res} · ${status.clients ?? 0} kernel(s) connected`;
    } else {
      this._resources.textContent = '';
    }
    const shares = status?.kernels ?? [];
    const running = shares.reduce((sum, k) => sum + k.running, 0);
    this._kernels.replaceChildren(...shares.map(k => kernelShare(k, running)));

    this._nodes.replaceChildren(...model.nodes.map(n => nodeCard(n)));
    if (model.nodes.length === 0) {
      this._nodes.appendChild(h('div', 'nbray-empty', 'No nodes: the cluster is not running.'));
    }

    const counts = model.summary.counts;
    const chips = TASK_STATES.filter(s => counts[s]).map(s => {
      const chip = h('span', `nbray-count nbray-count-${s}`);
      chip.style.borderLeft = `4px solid ${stateColor(s)}`;
      chip.appendChild(h('b', '', String(counts[s])));
      chip.appendChild(document.createTextNode(` ${s.toLowerCase()}`));
      return chip;
    });
    this._counts.replaceChildren(...chips);
    if (chips.length === 0) {
      this._counts.appendChild(h('span', 'nbray-empty', 'No tasks yet.'));
    }
    this._rate.textContent = `${model.summary.rate.toFixed(1)} tasks/s (last 10 s)`;

    const failures = model.summary.failures.slice(0, 5).map(f => {
      const item = h('div', 'nbray-failure');
      item.appendChild(h('b', '', f.name));
      const lines = (f.error || '').trim().split('\n');
      item.appendChild(h('div', 'nbray-failure-error', lines[lines.length - 1] || 'failed'));
      item.title = f.error;
      return item;
    });
    this._failures.replaceChildren(...failures);
    if (failures.length === 0) {
      this._failures.appendChild(h('span', 'nbray-empty', 'None.'));
    }
    this._renderSsh(model.ssh);
    this._renderClusters(model.kernelClusters);
  }

  /** One block per kernel's private cluster: owner, engine, nodes, its dashboard view. */
  private _renderClusters(clusters: IClusterEntry[]): void {
    const blocks = clusters.map(c => {
      const block = h('div', 'nbray-kernel-cluster');
      block.dataset.clusterId = c.id;
      const owner = c.path
        ? (c.path.split('/').pop() ?? c.path)
        : c.kernel_id
          ? `kernel ${c.kernel_id.slice(0, 8)}`
          : `pid ${c.pid}`;
      const head = h('div', 'nbray-kernel-cluster-head');
      head.appendChild(h('b', 'nbray-kernel-cluster-owner', owner));
      const how = c.owned ? c.state : `connected to ${c.address}`;
      head.appendChild(document.createTextNode(` · ${c.engine} engine · ${how}`));
      head.title = `${c.path || c.kernel_id || `process ${c.pid}`}\n${c.address}`;
      block.appendChild(head);
      if (c.error) {
        block.appendChild(h('div', 'nbray-error', c.error));
      }
      const nodes = h('div', 'nbray-nodes');
      nodes.replaceChildren(...c.nodes.map(n => nodeCard(n)));
      block.appendChild(nodes);
      const link = h('a', 'nbray-kernel-cluster-dashboard', 'Open dashboard') as HTMLAnchorElement;
      link.href = dashboardURL(c.id);
      link.target = '_blank';
      link.rel = 'noopener';
      block.appendChild(link);
      if (c.ray_dashboard) {
        const ray = h('a', 'nbray-kernel-cluster-ray-dashboard', "Ray's dashboard");
        (ray as HTMLAnchorElement).href = rayDashboardURL(c.id);
        (ray as HTMLAnchorElement).target = '_blank';
        (ray as HTMLAnchorElement).rel = 'noopener';
        block.appendChild(ray);
      }
      return block;
    });
    this._clusters.replaceChildren(...blocks);
    if (blocks.length === 0) {
      this._clusters.appendChild(h('span', 'nbray-empty', 'None: kernels use the cluster above.'));
    }
  }

  private _model: ClusterModel;
  private _options: NbrayPanel.IOptions;
  private _buttons: { [name: string]: HTMLButtonElement } = {};
  private _state!: HTMLElement;
  private _live!: HTMLElement;
  private _cpus!: HTMLInputElement;
  private _error!: HTMLElement;
  private _resources!: HTMLElement;
  private _kernels!: HTMLElement;
  private _nodes!: HTMLElement;
  private _counts!: HTMLElement;
  private _rate!: HTMLElement;
  private _failures!: HTMLElement;
  private _ssh!: HTMLElement;
  private _clusters!: HTMLElement;
  private _sshInputs: { [name: string]: HTMLInputElement } = {};
  private _sshInstall!: HTMLInputElement;
}
