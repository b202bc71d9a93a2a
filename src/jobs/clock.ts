/**
 * A monotonic clock in milliseconds from an arbitrary origin, for durations inside a worker (compute time, the
 * self-fence budget). It reads the same clock as `performance.now()`, but the first use of the `performance`
 * global loads perf_hooks, ~4 ms of CPU out of a worker's start (docs/benchmarks.md, "Worker start").
 */
export function monotonicMs (): number {
  return Number(process.hrtime.bigint()) / 1e6
}
