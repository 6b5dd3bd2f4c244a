// A trusted notebook's nbray widgets show their picture where no kernel draws them.
//
//   nbray widget output {widget-view+json, text/html: picture, text/plain}
//     untrusted: JupyterLab renders the text/html (our factory is not safe)
//     trusted:   PictureRenderer (each notebook's factory for widget-view+json)
//                 ├─ ipywidgets' renderer: 'Loading widget...', then the live view, or
//                 │  'Error displaying widget: model not found' (no kernel holds the model)
//                 └─ the picture: the rendermime's text/html renderer, sanitised, shown
//                    while ipywidgets' renderer holds no live view
//   a bundle without nbray's picture ──▶ ipywidgets' renderer alone
//
// ipywidgets (@jupyter-widgets/jupyterlab-manager 5) adds a factory without a widget manager
// when it activates, and each notebook's own one (with its kernel's manager) only once the
// notebook's kernel is ready, with rendermime.addFactory: so each notebook's rendermime
// wraps whichever widget-view factory it is given, then or later. The outputs drawn before
// the kernel was ready get a renderer from the new factory (ipywidgets gives its own
// renderers the manager, but cannot find those nested in ours).
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { JSONExt } from '@lumino/coreutils';
import { MessageLoop } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

export const WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json';
const HTML_MIME = 'text/html';
/** What opens each picture (nbray/widgets/pictures.py: PICTURE_CLASS and its kind). */
export const PICTURE_MARK = 'class="nbray-picture nbray-picture-';

/** The picture in an output's bundle, or null when the output is not an nbray widget's. */
export function pictureOf(data: IRenderMime.IMimeModel['data']): string | null {
  const html = data[HTML_MIME];
  return typeof html === 'string' && html.includes(PICTURE_MARK) ? html : null;
}

/** A notebook's factory for widget views: ipywidgets' renderers, with nbray's pictures. */
class PictureFactory implements IRenderMime.IRendererFactory {
  readonly safe = false;
  readonly mimeTypes = [WIDGET_VIEW_MIME];

  constructor(
    readonly rendermime: IRenderMimeRegistry,
    private _views: IRenderMime.IRendererFactory
  ) {}

  /** ipywidgets' factory of the moment. */
  get views(): IRenderMime.IRendererFactory {
    return this._views;
  }

  /** A new ipywidgets factory: the outputs drawn with the old one get renderers from it. */
  set views(factory: IRenderMime.IRendererFactory) {
    this._views = factory;
    for (const renderer of this._renderers) {
      renderer.setView(factory.createRenderer(renderer.options));
    }
  }

  createRenderer(options: IRenderMime.IRendererOptions): IRenderMime.IRenderer {
    const renderer = new PictureRenderer(this, options);
    this._renderers.add(renderer);
    renderer.disposed.connect(() => this._renderers.delete(renderer));
    return renderer;
  }

  private _renderers = new Set<PictureRenderer>();
}

const VIEW_CLASS = 'nbray-PictureRenderer-view';
const PICTURE_CLASS = 'nbray-PictureRenderer-picture';
/** On the renderer while it shows the picture (style/index.css hides the view then). */
const SHOWS_PICTURE_CLASS = 'nbray-mod-picture';

/** ipywidgets' renderer as a child, and the bundle's picture while that has no live view. */
class PictureRenderer extends Panel implements IRenderMime.IRenderer {
  constructor(
    private _factory: PictureFactory,
    readonly options: IRenderMime.IRendererOptions
  ) {
    super();
    this.addClass('nbray-PictureRenderer');
    this._view = this._adopt(_factory.views.createRenderer(options));
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const previous = this._model;
    this._model = model;
    this._picture = pictureOf(model.data);
    // a new picture of the widget already drawn live (nbray's end-of-cell update): the
    // view stays as it is
    const sameView =
      previous !== null &&
      this._picture !== null &&
      this._isLive() &&
      JSONExt.deepEqual(
        previous.data[WIDGET_VIEW_MIME] ?? null,
        model.data[WIDGET_VIEW_MIME] ?? null
      );
    const view = sameView ? Promise.resolve() : this._view.renderModel(model);
    await Promise.all([this._sync(), view]);
  }

  /** Replace ipywidgets' renderer (one from a newer factory), drawing the same output. */
  setView(view: IRenderMime.IRenderer): void {
    this._observer.disconnect();
    this._view.dispose();
    this._view = this._adopt(view);
    if (this._model) {
      void this._view.renderModel(this._model);
      void this._sync();
    }
  }

  dispose(): void {
    this._observer.disconnect();
    super.dispose();
  }

  private _adopt(view: IRenderMime.IRenderer): IRenderMime.IRenderer {
    view.addClass(VIEW_CLASS);
    this.addWidget(view);
    // ipywidgets writes its states as the view node's text, and adds the live view as an
    // element (or hides itself when that view is disposed)
    this._observer.observe(view.node, {
      childList: true,
      attributes: true,
      attributeFilter: ['class']
    });
    return view;
  }

  private _isLive(): boolean {
    return !this._view.isHidden && this._view.node.firstElementChild !== null;
  }

  /** Show the picture or the view, as the view's state says; draw a picture not drawn. */
  private async _sync(): Promise<void> {
    const showPicture = this._picture !== null && !this._isLive();
    const wasPicture = this.hasClass(SHOWS_PICTURE_CLASS);
    this.toggleClass(SHOWS_PICTURE_CLASS, showPicture);
    if (wasPicture && !showPicture) {
      // out of its hidden place: a view that measured itself there measures again
      MessageLoop.sendMessage(this._view, Widget.ResizeMessage.UnknownSize);
    }
    if (!showPicture || this._picture === this._drawn) {
      return;
    }
    this._drawn = this._picture;
    if (!this._pictureRenderer) {
      this._pictureRenderer = this._factory.rendermime.createRenderer(HTML_MIME);
      this._pictureRenderer.addClass(PICTURE_CLASS);
      this.insertWidget(0, this._pictureRenderer);
    }
    // sanitised as in an untrusted notebook: a picture holds no script
    const data = { [HTML_MIME]: this._picture };
    await this._pictureRenderer.renderModel(new MimeModel({ data, trusted: false }));
  }

  private _model: IRenderMime.IMimeModel | null = null;
  private _picture: string | null = null;
  private _drawn: string | null = null;
  private _view: IRenderMime.IRenderer;
  private _pictureRenderer: IRenderMime.IRenderer | null = null;
  private _observer = new MutationObserver(() => void this._sync());
}

/** Wrap the notebook's widget-view factories, this one and those added later; without
 * ipywidgets (no such factory) nothing. */
function wrapWidgetViews(panel: NotebookPanel): void {
  const rendermime = panel.content.rendermime;
  const views = rendermime.getFactory(WIDGET_VIEW_MIME);
  if (!views || views instanceof PictureFactory) {
    return;
  }
  const pictures = new PictureFactory(rendermime, views);
  const addFactory = rendermime.addFactory.bind(rendermime);
  rendermime.addFactory = (factory: IRenderMime.IRendererFactory, rank?: number) => {
    const isViews =
      factory !== pictures &&
      factory.mimeTypes.length === 1 &&
      factory.mimeTypes[0] === WIDGET_VIEW_MIME;
    if (isViews) {
      pictures.views = factory;
    }
    addFactory(isViews ? pictures : factory, rank);
  };
  rendermime.addFactory(pictures, rendermime.getRank(WIDGET_VIEW_MIME));
}

export const picturesPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nbray:pictures',
  description: "nbray widgets' pictures where a trusted notebook's widget has no live view",
  autoStart: true,
  optional: [INotebookTracker],
  activate: (app: JupyterFrontEnd, notebooks: INotebookTracker | null) => {
    if (!notebooks) {
      return;
    }
    notebooks.forEach(wrapWidgetViews);
    notebooks.widgetAdded.connect((_, panel) => wrapWidgetViews(panel));
  }
};
