/** Turns anything thrown into an Error, keeping the original as `cause` when it was not one. */
export function coerceError (value: unknown): Error {
  if (value instanceof Error) return value
  return new Error(typeof value === 'string' ? value : JSON.stringify(value), { cause: value })
}

/** Base of the errors the HTTP layer maps to a status code; the message is shown to the client. */
export class HttpError extends Error {
  constructor (readonly statusCode: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
    this.name = new.target.name
  }
}

/** No such job (404). */
export class NotFoundError extends HttpError {
  constructor (message: string) { super(404, message) }
}

/** The job is in a state that does not allow the request (409). */
export class ConflictError extends HttpError {
  constructor (message: string) { super(409, message) }
}

/** The queue is full; the client should come back later (429 with Retry-After). */
export class QueueFullError extends HttpError {
  constructor (message: string, retryAfterSeconds: number) {
    super(429, message, { 'retry-after': String(retryAfterSeconds) })
  }
}
