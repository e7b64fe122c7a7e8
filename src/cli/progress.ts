// The live "waiting for the guest…" line while an unplug waits. On a TTY it
// redraws one line in place; otherwise it prints one plain line when the wait
// starts and each note, so logs and pipes stay readable.

export interface Writable {
  write(s: string): unknown;
  isTTY?: boolean;
}

const SPINNER = ['|', '/', '-', '\\'];

export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private frame = 0;
  private render: (elapsedS: number) => string = () => '';

  constructor(
    private readonly out: Writable,
    private readonly now: () => number = Date.now,
    private readonly intervalMs = 200,
  ) {}

  get tty(): boolean {
    return this.out.isTTY === true;
  }

  /** `render(elapsedSeconds)` gives the line's text. */
  start(render: (elapsedS: number) => string): void {
    this.render = render;
    this.startedAt = this.now();
    if (!this.tty) {
      this.out.write(`${render(0)}\n`);
      return;
    }
    this.draw();
    this.timer = setInterval(() => this.draw(), this.intervalMs);
    this.timer.unref();
  }

  elapsedS(): number {
    return (this.now() - this.startedAt) / 1000;
  }

  /** A line that stays (e.g. "removed ua-…"), printed above the live line. */
  note(line: string): void {
    if (!this.tty) {
      this.out.write(`${line}\n`);
      return;
    }
    this.out.write(`\r\x1b[2K${line}\n`);
    if (this.timer) this.draw();
  }

  stop(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.out.write('\r\x1b[2K');
    }
  }

  private draw(): void {
    const spin = SPINNER[this.frame++ % SPINNER.length] ?? '';
    this.out.write(`\r\x1b[2K${spin} ${this.render(this.elapsedS())}`);
  }
}
