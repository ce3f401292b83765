/** Exponential backoff with full jitter, so many pages don't reconnect in lockstep. */
export class Backoff {
  #attempt = 0;
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;

  constructor({ initialMs = 250, maxMs = 5_000, random = Math.random } = {}) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
    this.#random = random;
  }

  get attempt(): number {
    return this.#attempt;
  }

  /** Delay before the next try; grows until maxMs. */
  next(): number {
    const cap = Math.min(this.#maxMs, this.#initialMs * 2 ** this.#attempt);
    this.#attempt += 1;
    return Math.round(cap / 2 + (this.#random() * cap) / 2);
  }

  reset(): void {
    this.#attempt = 0;
  }
}
