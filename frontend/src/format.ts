// The front end's one byte formatter, duration formatter, state colour and DOM helper,
// shared by the side panel and the dashboard (the colours come from the event contract).
import { STATE_COLORS, TaskState } from './events';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `1536` -> `'1.5 KiB'` (binary units, like the notebook widgets). */
export function formatBytes(n: number): string {
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return i ? `${n.toFixed(1)} ${UNITS[i]}` : `${n.toFixed(0)} B`;
}

/** `0.0123` -> `'12 ms'`, `3.5` -> `'3.50 s'`, `125` -> `'2 min 5 s'`. */
export function formatDuration(seconds: number): string {
  if (seconds < 1) {
    return `${(seconds * 1000).toFixed(0)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(2)} s`;
  }
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/** The colour of a task state (grey for anything outside the vocabulary). */
export function stateColor(state: string): string {
  return STATE_COLORS[state as TaskState] ?? '#9ca3af';
}

/** A new element with a class name and text. */
export function h(tag: string, cls: string, text?: string): HTMLElement {
  const el = document.createElement(tag);
  if (cls) {
    el.className = cls;
  }
  if (text !== undefined) {
    el.textContent = text;
  }
  return el;
}
