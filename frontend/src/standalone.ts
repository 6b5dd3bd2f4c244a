// The dashboard as a page of its own, at <base>/nbray/dashboard: the same widget and model
// as in JupyterLab, attached to the page's body. The server puts the base URL in the
// page's `jupyter-config-data`; ServerConnection reads it (and the _xsrf cookie) from
// there. A `?token=` in the address is passed on, like JupyterLab does; `?cluster=<id>`
// shows a kernel's private cluster (the side panel's "Clusters" links here).
import { PageConfig } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { NbrayDashboard } from './dashboard';
import { ClusterModel } from './model';

function main(): void {
  const query = new URLSearchParams(window.location.search);
  const token = query.get('token');
  if (token) {
    PageConfig.setOption('token', token);
    PageConfig.setOption('appendToken', 'true');
  }
  const cluster = (query.get('cluster') ?? '').replace(/[^0-9a-z]/g, '');
  const dashboard = new NbrayDashboard({ model: new ClusterModel({ cluster }) });
  if (cluster) {
    document.title = `nbray dashboard · kernel cluster ${cluster}`;
    dashboard.addClass('nbray-dashboard-kernel');
    dashboard.node.dataset.cluster = cluster;
  }
  Widget.attach(dashboard, document.body);
  window.addEventListener('resize', () => dashboard.update());
  // like a hidden panel, a hidden page closes its event stream
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) {
      dashboard.hide();
    } else {
      dashboard.show();
    }
  });
}

main();
