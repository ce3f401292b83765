/** "just now", "12s ago", "3m ago", "5h ago", "2d ago"; "—" for never. */
export function relativeTime(then: Date | number | null, now: number): string {
  if (then === null) return "—";
  const ms = now - (typeof then === "number" ? then : then.getTime());
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s}s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.round(h / 24)}d ago`;
}
