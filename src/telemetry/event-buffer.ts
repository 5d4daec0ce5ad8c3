/**
 * Events raised while the broker is unreachable, oldest first, at most
 * `capacity`; when full, the oldest is dropped. Draining empties it, so each
 * kept event is sent once.
 */
export class EventBuffer<T> {
  private items: T[] = [];
  private droppedCount = 0;
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.capacity) {
      this.items.shift();
      this.droppedCount += 1;
    }
  }

  get length(): number {
    return this.items.length;
  }

  /** Events dropped since the last drain. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Returns the kept events and empties the buffer. */
  drain(): T[] {
    const items = this.items;
    this.items = [];
    this.droppedCount = 0;
    return items;
  }
}
