// The one helper that talks to the nbray server extension's REST API.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * Call `<base_url>/nbray/api/<endPoint>` with the server's credentials (token, XSRF).
 * Resolves to the parsed JSON; rejects with the server's message on an error status.
 */
export async function requestAPI<T>(endPoint = '', init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nbray', 'api', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text; // eslint-disable-line @typescript-eslint/no-explicit-any
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the error message
    }
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data.message || text);
  }
  return data as T;
}

/**
 * The WebSocket URL of an event stream (`events`, or `clusters/<id>/events`). As JupyterLab's
 * own sockets, it carries the token only where the settings say to append it (the standalone
 * dashboard opened with `?token=`); otherwise the browser's cookies authenticate it
 * (JupyterHub's, or the server's login), and no token ends up in URLs that proxies and
 * servers log.
 */
export function eventsURL(endPoint = 'events'): string {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.wsUrl, 'nbray', 'api', endPoint);
  if (settings.appendToken && settings.token) {
    url += '?token=' + encodeURIComponent(settings.token);
  }
  return url;
}

/** Ray's own dashboard of a Ray cluster a kernel uses, proxied by the server. */
export function rayDashboardURL(cluster: string): string {
  const settings = ServerConnection.makeSettings();
  // the trailing slash: Ray's page links its assets relatively (./static/...)
  return URLExt.join(settings.baseUrl, 'nbray', 'ray-dashboard', cluster) + '/';
}

/** The dashboard page of a kernel's cluster (a new browser tab, in JupyterLab too). */
export function dashboardURL(cluster: string): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'nbray', 'dashboard') + `?cluster=${cluster}`;
}
