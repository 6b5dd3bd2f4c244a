// nbray's JupyterLab and Notebook 7 extension: a side panel over the server extension's
// cluster, a dashboard (a JupyterLab tab; in Notebook 7, whose main area holds one
// document, its own page in a new browser tab), a command that inserts a ready snippet in
// the active notebook, and the widgets' pictures in trusted notebooks whose widgets no
// kernel draws (pictures.ts). Nothing here needs JupyterLab's shell: in Notebook 7 the
// panel sits in the left sidebar (View > Left Sidebar > Show nbray cluster).
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { NbrayDashboard } from './dashboard';
import { ClusterModel } from './model';
import { NbrayPanel } from './panel';
import { picturesPlugin } from './pictures';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
<g class="jp-icon3" fill="#616161"><circle cx="12" cy="5" r="3"/><circle cx="5" cy="18" r="3"/>
<circle cx="19" cy="18" r="3"/><path d="M11 7.5h2v3l4.6 5-1.5 1.3L12 12.4l-4.1 4.4-1.5-1.3L11 10.5z"/></g>
</svg>`;

export const nbrayIcon = new LabIcon({ name: 'nbray:cluster', svgstr: ICON_SVG });

export const SNIPPET = `import nbray

nbray.init()  # joins the cluster this Jupyter server runs


@nbray.remote
def square(x):
    return x * x


print(nbray.get([square.remote(i) for i in range(8)]))`;

namespace CommandIDs {
  export const openDashboard = 'nbray:open-dashboard';
  export const insertSnippet = 'nbray:insert-snippet';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbray:plugin',
  description: 'nbray cluster side panel and dashboard',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, INotebookTracker, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    labShell: ILabShell | null
  ) => {
    // one model (one event stream) for the panel and the dashboard
    const model = new ClusterModel();
    let dashboard: MainAreaWidget<NbrayDashboard> | null = null;

    app.commands.addCommand(CommandIDs.openDashboard, {
      label: 'Open nbray Dashboard',
      execute: () => {
        if (!labShell) {
          // Notebook 7: the server's dashboard page, beside the notebook
          window.open(URLExt.join(PageConfig.getBaseUrl(), 'nbray', 'dashboard'), '_blank');
          return;
        }
        if (!dashboard || dashboard.isDisposed) {
          const content = new NbrayDashboard({ model });
          dashboard = new MainAreaWidget({ content });
          dashboard.id = 'nbray-dashboard';
          dashboard.title.label = 'nbray Dashboard';
          dashboard.title.icon = nbrayIcon;
          dashboard.title.closable = true;
        }
        if (!dashboard.isAttached) {
          app.shell.add(dashboard, 'main');
        }
        app.shell.activateById(dashboard.id);
      }
    });

    app.commands.addCommand(CommandIDs.insertSnippet, {
      label: 'Insert nbray Snippet',
      isEnabled: () => !!notebooks?.currentWidget,
      execute: () => {
        const current = notebooks?.currentWidget;
        if (!current) {
          Notification.warning('Open a notebook first: the snippet goes into the active one.', {
            autoClose: 5000
          });
          return;
        }
        const notebook = current.content;
        NotebookActions.insertBelow(notebook);
        const cell = notebook.activeCell;
        if (cell) {
          cell.model.sharedModel.setSource(SNIPPET);
        }
      }
    });

    const panel = new NbrayPanel({
      model,
      openDashboard: () => void app.commands.execute(CommandIDs.openDashboard),
      insertSnippet: () => void app.commands.execute(CommandIDs.insertSnippet)
    });
    panel.title.icon = nbrayIcon;
    app.shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, 'nbray-panel');
    }
    if (palette) {
      palette.addItem({ command: CommandIDs.openDashboard, category: 'nbray' });
      palette.addItem({ command: CommandIDs.insertSnippet, category: 'nbray' });
    }
  }
};

export default [plugin, picturesPlugin];
