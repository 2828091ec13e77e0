import { InvalidRequestError } from './errors.js'

/** An init option that must be a positive integer (a count, or a duration in ms). */
export function positiveInteger (value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new InvalidRequestError(`${name} must be a positive integer, got ${String(value)}`)
  return value
}
