// A widget that is live only while it is visible: the panel and the dashboard turn their
// model's event stream on when shown or attached visible, and off when hidden or detached.
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

export abstract class LiveWidget extends Widget {
  /** Start (true) or stop (false) live updates. */
  protected abstract setLive(live: boolean): void;

  protected onAfterShow(msg: Message): void {
    this.setLive(true);
  }

  protected onAfterAttach(msg: Message): void {
    if (this.isVisible) {
      this.setLive(true);
    }
  }

  protected onBeforeHide(msg: Message): void {
    this.setLive(false);
  }

  protected onBeforeDetach(msg: Message): void {
    this.setLive(false);
  }
}
