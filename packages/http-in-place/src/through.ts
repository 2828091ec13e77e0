/**
 * The same GET through an undici dispatcher, for a server whose bodies `InPlaceGets` does not
 * read in place (chunked, or ended by closing the connection): the answer comes back as
 * `InPlaceGets.get` gives it, so a caller handles both alike. undici hands a body over in pieces;
 * each is copied into the buffer `into` names (a body of unknown length is collected first and
 * copied once its length is known). The dispatcher is the caller's: this module loads no undici,
 * so an origin loads it only once a server needs it.
 */
import { InPlaceGets } from './client.js'
import { BodyLengthError, UnsupportedFramingError } from './errors.js'
import type { Endpoint, GetOptions, InPlaceGetInit, InPlaceResponse } from './client.js'
import type { Dispatcher } from 'undici'

export interface ThroughOptions extends GetOptions {
  /** at most this much of a body that `into` does not take is kept */
  maxErrorBodyBytes: number
}

/** One GET of `path` at `endpoint` through `dispatcher`; a failed GET may still write into the buffer `into` named, so it is not given back. */
export async function getThrough (dispatcher: Dispatcher, endpoint: Endpoint, path: string, options: ThroughOptions): Promise<InPlaceResponse> {
  const { signal, into, onBody, headers, maxErrorBodyBytes } = options
  signal?.throwIfAborted()
  return await new Promise<InPlaceResponse>((resolve, reject) => {
    let controller: { abort(reason: Error): void } | undefined
    let status = 0
    let answerHeaders = new Map<string, string>()
    let target: Uint8Array | undefined
    let skipped = false
    /** a body of known length that `into` did not take: only its start is kept */
    let startOnly = false
    let received = 0
    const parts: Buffer[] = []
    const onAbort = (): void => { controller?.abort(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
    const settle = (error: Error | undefined, response?: InPlaceResponse): void => {
      signal?.removeEventListener('abort', onAbort)
      if (error !== undefined) reject(error)
      else resolve(response as InPlaceResponse)
    }
    dispatcher.dispatch({ origin: `${endpoint.protocol}//${endpoint.host}`, path, method: 'GET', headers: { ...headers } }, {
      onRequestStart (ctl) {
        controller = ctl
        if (signal?.aborted === true) ctl.abort(signal.reason)
      },
      onResponseStart (ctl, statusCode, rawHeaders) {
        status = statusCode
        answerHeaders = new Map(Object.entries(rawHeaders).flatMap(([name, value]) => value === undefined ? [] : [[name.toLowerCase(), Array.isArray(value) ? value.join(', ') : value]]))
        const length = Number(answerHeaders.get('content-length'))
        if (!Number.isSafeInteger(length) || length < 0) return
        const chosen = into?.(status, answerHeaders, length)
        if (chosen === false) {
          skipped = true
          settle(undefined, { status, headers: answerHeaders, body: new Uint8Array(0) })
          ctl.abort(new Error('body not wanted'))
        } else if (chosen !== undefined) {
          if (chosen.byteLength !== length) throw new RangeError(`a buffer of ${chosen.byteLength} bytes for a body of ${length}`)
          target = chosen
        } else {
          startOnly = true
        }
      },
      onResponseData (ctl, chunk) {
        if (target !== undefined) {
          if (received + chunk.byteLength > target.byteLength) {
            ctl.abort(new BodyLengthError(target.byteLength, received + chunk.byteLength))
            return
          }
          target.set(chunk, received)
          received += chunk.byteLength
          onBody?.(target, received)
          return
        } else if (startOnly || status < 200 || status >= 300) {
          // an error document, or a body not wanted whole: keep its start
          if (received < maxErrorBodyBytes) parts.push(chunk)
        } else {
          parts.push(chunk)
        }
        received += chunk.byteLength
      },
      onResponseEnd () {
        if (skipped) return
        if (target !== undefined) {
          if (received !== target.byteLength) settle(new BodyLengthError(target.byteLength, received))
          else settle(undefined, { status, headers: answerHeaders, body: target })
          return
        }
        const whole = Buffer.concat(parts)
        const kept = !startOnly && status >= 200 && status < 300 ? into?.(status, answerHeaders, whole.byteLength) : undefined
        if (kept !== undefined && kept !== false) {
          kept.set(whole)
          settle(undefined, { status, headers: answerHeaders, body: kept })
        } else {
          const body = whole.subarray(0, Math.min(whole.byteLength, maxErrorBodyBytes))
          settle(undefined, { status, headers: answerHeaders, body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) })
        }
      },
      onResponseError (_controller, error) {
        if (!skipped) settle(error)
      }
    })
  })
}

export interface ObjectGetsInit extends InPlaceGetInit {
  /** told once, when a body framed otherwise sends every later GET through undici */
  onRetire?(framing: string): void
}

/**
 * GETs in place while the endpoint frames bodies by Content-Length, and through undici from the
 * first one it frames otherwise (GETs under way in place finish there); undici is loaded then,
 * not before. What the S3 and Azure origins read objects with.
 */
export class ObjectGets {
  private readonly init: ObjectGetsInit
  private readonly inPlace: InPlaceGets
  private retired = false
  private dispatcher: Promise<Dispatcher & { close(): Promise<void> }> | undefined

  constructor (init: ObjectGetsInit) {
    this.init = init
    this.inPlace = new InPlaceGets(init)
  }

  async get (endpoint: Endpoint, path: string, options: GetOptions): Promise<InPlaceResponse> {
    if (!this.retired) {
      try {
        return await this.inPlace.get(endpoint, path, options)
      } catch (err) {
        if (!(err instanceof UnsupportedFramingError)) throw err
        if (!this.retired) this.init.onRetire?.(err.framing)
        this.retired = true
      }
    }
    return await getThrough(await this.undici(), endpoint, path, { ...options, maxErrorBodyBytes: this.init.maxErrorBodyBytes })
  }

  async close (): Promise<void> {
    await this.inPlace.close()
    await (await this.dispatcher)?.close()
  }

  private async undici (): Promise<Dispatcher & { close(): Promise<void> }> {
    const { maxConnections, keepAliveMs, timeoutMs, ca } = this.init
    this.dispatcher ??= import('undici').then(({ Agent }) => new Agent({
      connections: maxConnections,
      keepAliveTimeout: keepAliveMs,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      connect: { timeout: timeoutMs, ...(ca !== undefined ? { ca } : {}) }
    }))
    return await this.dispatcher
  }
}
