/** A ticking "now" for relative times; stops when the owning component is destroyed. */
export class Clock {
  now = $state(Date.now());

  constructor(intervalMs = 1000) {
    $effect(() => {
      const timer = setInterval(() => (this.now = Date.now()), intervalMs);
      return () => clearInterval(timer);
    });
  }
}
