import { SwarmError } from '@swarm/interface'

/**
 * A body that ended before its Content-Length, or ran past it. `received` says how many bytes
 * landed in the buffer the body was read into (the start of the body: a caller may resume from
 * there with a range request). The connection is closed; another attempt may pass.
 */
export class BodyLengthError extends SwarmError {
  override readonly code = 'ERR_BODY_LENGTH'
  constructor (readonly expected: number, readonly received: number) {
    super(received < expected ? `the response body ended after ${received} of ${expected} bytes` : `the response body ran past its ${expected} bytes`)
  }
}

/**
 * A body framed in a way this client does not read in place (`Transfer-Encoding: chunked`, or
 * ended by closing the connection): the caller reads that response another way.
 */
export class UnsupportedFramingError extends SwarmError {
  override readonly code = 'ERR_UNSUPPORTED_FRAMING'
  constructor (readonly framing: string) {
    super(`a response body framed by ${framing}`)
  }
}
