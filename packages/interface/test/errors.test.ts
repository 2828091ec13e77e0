import { describe, expect, it } from 'vitest'
import { AbortError, ChunkUnavailableError, NotFoundError, OriginUnavailableError, SwarmError } from '../src/errors.js'

class ExampleError extends SwarmError {
  override readonly code = 'ERR_EXAMPLE'
}

describe('SwarmError', () => {
  it('takes its name from the subclass and keeps code, message and cause', () => {
    const cause = new Error('socket hang up')
    const err = new ExampleError('it broke', { cause })
    expect(err).toBeInstanceOf(Error)
    expect(err).toBeInstanceOf(SwarmError)
    expect(err.name).toBe('ExampleError')
    expect(err.code).toBe('ERR_EXAMPLE')
    expect(err.message).toBe('it broke')
    expect(err.cause).toBe(cause)
    expect(String(err)).toBe('ExampleError: it broke')
    expect(err.stack).toContain('ExampleError: it broke')
  })

  it('leaves cause unset when none is given', () => {
    expect('cause' in new ExampleError('plain')).toBe(false)
  })

  it('keeps the shared errors as they were: name, code, message, fields', () => {
    const notFound = new NotFoundError()
    expect([notFound.name, notFound.code, notFound.message]).toEqual(['NotFoundError', 'ERR_NOT_FOUND', 'Not found'])
    const abort = new AbortError()
    expect([abort.name, abort.code, abort.type, abort.message]).toEqual(['AbortError', 'ABORT_ERR', 'aborted', 'The operation was aborted'])
    const unavailable = new ChunkUnavailableError('bafy', [{ source: 'origin', error: new Error('down') }])
    expect(unavailable.message).toBe('chunk bafy unavailable: origin: down')
    expect(unavailable.causes).toHaveLength(1)
    const cause = new Error('refused')
    const origin = new OriginUnavailableError('no answer', { cause })
    expect([origin.name, origin.code, origin.cause]).toEqual(['OriginUnavailableError', 'ERR_ORIGIN_UNAVAILABLE', cause])
  })
})
