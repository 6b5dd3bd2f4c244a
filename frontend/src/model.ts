// The data of the side panel and the dashboard: cluster status and nodes over REST, live
// updates over the WebSocket. One model serves both views in JupyterLab (one stream).
//
//   REST nbray/api/cluster, nodes, summary, ssh/status ─▶ ClusterModel ─▶ changed ─▶ views
//   WS   nbray/api/events (batches every ~0.5 s) ─┘      └─▶ received(events) ─▶ dashboard
//        reconnects with backoff; open only while some view is visible
//   REST nbray/api/clusters (kernels' private clusters; again on a "clusters" event, and
//        every 2 s while some are listed, for their nodes' live bars) ─▶ kernelClusters
// A model made with `cluster: id` shows one kernel's cluster instead (its dashboard view):
// the same routes under nbray/api/clusters/<id>/.
import { ISignal, Signal } from '@lumino/signaling';

import { Event, IKernelClusterRecord, IMetricsEvent, ISummaryRecord } from './events';
import { eventsURL, requestAPI } from './request';

export type INodeMetrics = IMetricsEvent;

export interface INode {
  NodeID: string;
  /** false once the node died (Ray's nodes; the local engine's one node has no field). */
  Alive?: boolean;
  NodeManagerHostname: string;
  Resources: { [name: string]: number };
  metrics?: INodeMetrics;
}

export type ISummary = ISummaryRecord;

export interface IStatus {
  state: string;
  error: string;
  address: string;
  resources?: { [name: string]: number };
  tasks?: { [state: string]: number };
  workers?: { [id: string]: string };
  clients?: number;
  /** Each kernel with tasks here: how many run and wait (the cluster is shared fairly). */
  kernels?: IKernelShare[];
  settings: { num_cpus: number | null; object_store_memory: number | null };
  /** A kernel's cluster: its owner kernel and notebook, and its engine. */
  kernel_id?: string;
  path?: string;
  engine?: string;
}

export interface IKernelShare {
  pid: number;
  running: number;
  queued: number;
  /** This server's kernel, and its notebook, when the process is one of them. */
  kernel_id?: string;
  path?: string;
}

/** The SSH cluster of `nbray up` (GET ssh/status): per-host progress and node liveness. */
export interface ISshStatus {
  state: string; // down | starting | up | failed | stopping
  name: string;
  error: string;
  address: string;
  hosts: { host: string; step: string; status: string }[];
  nodes: { node_id: string; address: string; state: string; reason: string }[];
}

/** A cluster of `GET nbray/api/clusters`: the server's own (id "server") or a kernel's. */
export interface IClusterEntry extends IKernelClusterRecord {
  nodes: INode[];
}

export namespace ClusterModel {
  export interface IOptions {
    /** A kernel's cluster (its id in nbray/api/clusters); default: the server's own. */
    cluster?: string;
  }
}

interface IMessage {
  events: Event[];
  dropped: number;
  summary: ISummary;
  state: string;
}

const MAX_BACKOFF_MS = 15000;

export class ClusterModel {
  constructor(options: ClusterModel.IOptions = {}) {
    this.cluster = options.cluster ?? '';
  }

  /** The kernel's cluster this model shows ('' for the server's own). */
  readonly cluster: string;
  status: IStatus | null = null;
  nodes: INode[] = [];
  ssh: ISshStatus | null = null;
  /** The kernels' private clusters (the server's model only). */
  kernelClusters: IClusterEntry[] = [];
  summary: ISummary = { counts: {}, rate: 0, failures: [] };
  connected = false;
  error = '';

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Each batch of events from the stream (after the model took them in). */
  get received(): ISignal<this, Event[]> {
    return this._received;
  }

  /**
   * Start or stop live updates for one view (the panel, the dashboard): the stream is
   * open while at least one view is active.
   */
  setActive(active: boolean, view: object = this): void {
    const before = this._views.size > 0;
    if (active) {
      this._views.add(view);
    } else {
      this._views.delete(view);
    }
    this._active = this._views.size > 0;
    if (this._active && !before) {
      void this.refresh();
      this._connect();
    } else if (!this._active && before) {
      this._disconnect();
    }
  }

  /** The REST path of `endPoint` for this model's cluster. */
  path(endPoint: string): string {
    return this.cluster ? `clusters/${this.cluster}/${endPoint}` : endPoint;
  }

  async refresh(): Promise<void> {
    if (this.cluster) {
      return this._refreshKernelCluster();
    }
    try {
      // all at once: a render between two answers would show a running cluster, no nodes
      const [status, nodes, summary, ssh, clusters] = await Promise.all([
        requestAPI<IStatus>('cluster'),
        requestAPI<{ nodes: INode[] }>('nodes'),
        requestAPI<ISummary>('summary'),
        requestAPI<ISshStatus>('ssh/status'),
        requestAPI<{ clusters: IClusterEntry[] }>('clusters')
      ]);
      this.status = status;
      this.nodes = nodes.nodes;
      this.summary = summary;
      this.ssh = ssh;
      this.kernelClusters = clusters.clusters.filter(c => c.id !== 'server');
      this.error = status.error || '';
      this._pollSsh();
      this._pollClusters();
    } catch (error) {
      this.error = `cannot reach the nbray server extension: ${(error as Error).message}`;
    }
    this._changed.emit();
  }

  /** The kernels' clusters again (their nodes' latest samples). */
  async refreshClusters(): Promise<void> {
    try {
      const clusters = await requestAPI<{ clusters: IClusterEntry[] }>('clusters');
      this.kernelClusters = clusters.clusters.filter(c => c.id !== 'server');
    } catch (error) {
      this.error = `cannot reach the nbray server extension: ${(error as Error).message}`;
    }
    this._pollClusters();
    this._changed.emit();
  }

  private async _refreshKernelCluster(): Promise<void> {
    try {
      const [status, nodes, summary] = await Promise.all([
        requestAPI<IStatus>(`clusters/${this.cluster}`),
        requestAPI<{ nodes: INode[] }>(this.path('nodes')),
        requestAPI<ISummary>(this.path('summary'))
      ]);
      this.status = status;
      this.nodes = nodes.nodes;
      this.summary = summary;
      this.error = status.error || '';
    } catch (error) {
      this.status = null;
      this.nodes = [];
      this.error = `this kernel's cluster is gone (its kernel shut down?): ${(error as Error).message}`;
    }
    this._changed.emit();
  }

  /** While kernels' clusters are listed, their node cards' samples come by polling. */
  private _pollClusters(): void {
    window.clearTimeout(this._clustersTimer);
    if (this.kernelClusters.length && this._active) {
      this._clustersTimer = window.setTimeout(() => void this.refreshClusters(), 2000);
    }
  }

  async action(name: 'start' | 'stop' | 'restart', settings: object = {}): Promise<void> {
    if (this.cluster) {
      this.error = "a kernel's cluster starts and stops with its kernel (nbray.init, shutdown)";
      this._changed.emit();
      return;
    }
    this.error = '';
    try {
      this.status = await requestAPI<IStatus>(`cluster/${name}`, {
        method: 'POST',
        body: JSON.stringify(settings)
      });
    } catch (error) {
      this.error = `${name} failed: ${(error as Error).message}`;
    }
    await this.refresh();
  }

  /** `nbray up` with the cluster fields (as a cluster file's), or `nbray down`. */
  async sshAction(name: 'up' | 'down', fields: object = {}): Promise<void> {
    this.error = '';
    try {
      this.ssh = await requestAPI<ISshStatus>(`ssh/${name}`, {
        method: 'POST',
        body: JSON.stringify(fields)
      });
    } catch (error) {
      this.error = `SSH cluster ${name} failed: ${(error as Error).message}`;
    }
    await this.refresh();
  }

  /** While `nbray up`/`down` runs, its per-host progress comes by polling. */
  private _pollSsh(): void {
    window.clearTimeout(this._sshTimer);
    const busy = this.ssh && (this.ssh.state === 'starting' || this.ssh.state === 'stopping');
    if (busy && this._active) {
      this._sshTimer = window.setTimeout(() => void this.refresh(), 1000);
    }
  }

  dispose(): void {
    this._active = false;
    this._views.clear();
    window.clearTimeout(this._sshTimer);
    window.clearTimeout(this._clustersTimer);
    if (this._trailing !== null) {
      window.clearTimeout(this._trailing);
      this._trailing = null;
    }
    this._disconnect();
  }

  private _connect(): void {
    if (this._ws || !this._active) {
      return;
    }
    const ws = new WebSocket(eventsURL(this.path('events')));
    this._ws = ws;
    ws.onopen = () => {
      this._backoff = 500;
      this.connected = true;
      if (this._dropped) {
        this._dropped = false;
        // events were missed (and the server may be a new one): fetch the state again
        void this.refresh();
      } else {
        this._changed.emit();
      }
    };
    ws.onmessage = (msg: MessageEvent) => this._onMessage(JSON.parse(msg.data) as IMessage);
    ws.onclose = () => {
      this._ws = null;
      this._dropped = true;
      this.connected = false;
      this._changed.emit();
      if (this._active) {
        this._retry = window.setTimeout(() => this._connect(), this._backoff);
        this._backoff = Math.min(this._backoff * 2, MAX_BACKOFF_MS);
      }
    };
  }

  private _disconnect(): void {
    window.clearTimeout(this._retry);
    if (this._ws) {
      this._ws.onclose = null;
      this._ws.close();
      this._ws = null;
    }
    this.connected = false;
  }

  private _onMessage(msg: IMessage): void {
    this.summary = msg.summary;
    let refresh = false;
    for (const event of msg.events) {
      if (event.type === 'metrics') {
        for (const node of this.nodes) {
          if (node.NodeID === event.node_id) {
            node.metrics = event;
          }
        }
      } else if (event.type === 'node') {
        // a node joined or died: the SSH cluster's liveness, and Ray's own node list
        for (const node of this.nodes) {
          if (node.NodeID === event.node_id) {
            node.Alive = event.state === 'ALIVE';
          }
        }
        refresh = true;
      } else if (
        event.type === 'cluster' ||
        event.type === 'worker' ||
        event.type === 'client' ||
        event.type === 'clusters'
      ) {
        // (clusters: a kernel's private cluster appeared, or went with its kernel)
        // a kernel connected or left: the kernel count (and the head's counters) change
        refresh = true;
      }
    }
    if (this.status && this.status.state !== msg.state) {
      refresh = true;
    }
    // the kernel count, the kernels' shares and the head's counters: at most every 2 s
    // while tasks come and go, and once more 2 s after the last change (a trailing
    // refresh), so what the panel shows is never older than that
    const now = Date.now();
    if (msg.events.some(e => e.type === 'task')) {
      if (now - this._lastRefresh > 2000) {
        refresh = true;
      } else if (this._trailing === null) {
        this._trailing = window.setTimeout(
          () => {
            this._trailing = null;
            this._lastRefresh = Date.now();
            void this.refresh();
          },
          2000 - (now - this._lastRefresh)
        );
      }
    }
    if (refresh) {
      this._lastRefresh = now;
    }
    if (refresh) {
      void this.refresh();
    } else {
      this._changed.emit();
    }
    this._received.emit(msg.events);
  }

  private _active = false;
  private _views = new Set<object>();
  private _lastRefresh = 0;
  private _trailing: number | null = null; // the refresh after a throttled one
  private _backoff = 500;
  private _dropped = false; // the stream broke: refresh when it is back
  private _retry = 0;
  private _sshTimer = 0;
  private _clustersTimer = 0;
  private _ws: WebSocket | null = null;
  private _changed = new Signal<this, void>(this);
  private _received = new Signal<this, Event[]>(this);
}
