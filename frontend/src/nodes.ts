// A node's card (CPU, memory, GPU bars, workers, object store): the side panel's and the
// dashboard's.
import { IKernelShare, INode } from './model';
import { formatBytes, h } from './format';

function bar(label: string, percent: number, detail: string): HTMLElement {
  const row = h('div', 'nbray-bar-row');
  row.appendChild(h('span', 'nbray-bar-label', label));
  const outer = h('div', 'nbray-bar');
  const inner = h('div', 'nbray-bar-fill');
  inner.style.width = `${Math.max(0, Math.min(100, percent)).toFixed(1)}%`;
  outer.appendChild(inner);
  row.appendChild(outer);
  row.appendChild(h('span', 'nbray-bar-detail', detail));
  return row;
}

/** The card of one node: its name and size, then live bars once a sample came. */
export function nodeCard(node: INode): HTMLElement {
  const card = h('div', 'nbray-node-card');
  card.dataset.nodeId = node.NodeID;
  const cpus = node.Resources.CPU ?? 0;
  const gpus = node.Resources.GPU ?? 0;
  const name = `${node.NodeManagerHostname} · ${cpus} CPU${gpus ? ` · ${gpus} GPU` : ''}`;
  card.appendChild(h('div', 'nbray-node-name', name));
  if (node.Alive === false) {
    card.classList.add('nbray-node-dead');
    card.appendChild(h('div', 'nbray-node-note', 'gone: the node died'));
    return card;
  }
  const m = node.metrics;
  if (!m) {
    card.appendChild(h('div', 'nbray-empty', 'waiting for the first sample…'));
    return card;
  }
  card.appendChild(bar('CPU', m.cpu_percent, `${m.cpu_percent.toFixed(0)}% of ${m.num_cpus}`));
  const memory = `${formatBytes(m.memory_used)} / ${formatBytes(m.memory_total)}`;
  card.appendChild(bar('Mem', m.memory_percent, memory));
  for (const g of m.gpus) {
    const detail = `${g.utilization.toFixed(0)}% · ${formatBytes(g.memory_used)}`;
    card.appendChild(bar(`GPU${g.index}`, g.utilization, detail));
  }
  if (m.gpus.length === 0) {
    card.appendChild(h('div', 'nbray-node-note', 'no GPU'));
  }
  const workers = Object.keys(m.workers).length;
  const capacity = m.object_store_capacity_bytes;
  const used = formatBytes(m.object_store_bytes ?? 0);
  const store = `${used}${capacity ? ` / ${formatBytes(capacity)}` : ''}`;
  card.appendChild(h('div', 'nbray-node-note', `${workers} workers · object store ${store}`));
  return card;
}

/** One kernel's share of a shared cluster: its part of the running tasks, and what waits. */
export function kernelShare(share: IKernelShare, totalRunning: number): HTMLElement {
  const name = share.path
    ? (share.path.split('/').pop() ?? share.path)
    : share.kernel_id
      ? `kernel ${share.kernel_id.slice(0, 8)}`
      : `pid ${share.pid}`;
  const percent = totalRunning ? (100 * share.running) / totalRunning : 0;
  const row = bar(name, percent, `${share.running} running · ${share.queued} queued`);
  row.classList.add('nbray-kernel-share');
  row.title = share.path || share.kernel_id || `process ${share.pid}`;
  return row;
}
