/**
 * A monotonic clock in milliseconds from an arbitrary origin, for durations inside a worker (compute time, the
 * self-fence budget). Not `performance.now()`: the first use of the `performance` global loads perf_hooks, ~4 ms of
 * CPU out of a worker's start (docs/benchmarks.md, "2026-12-06, evening"). Its origin is not performance.now()'s:
 * compare its values only with each other.
 */
export function monotonicMs (): number {
  return Number(process.hrtime.bigint()) / 1e6
}
