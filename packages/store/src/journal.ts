/**
 * The presence journal of one content file (`<key>.have`): an append-only run of fixed-size,
 * self-checking records, each saying "chunk i is present" or "chunk i is missing again".
 *
 * Record layout (16 bytes, little-endian):
 *
 * | bytes | field |
 * |---|---|
 * | 0 | kind: `H` (present) or `D` (dropped) |
 * | 1 | format version (1) |
 * | 2–3 | zero |
 * | 4–7 | chunk index in the file |
 * | 8–11 | CRC-32 of the chunk's CID string |
 * | 12–15 | CRC-32 of bytes 0–11 |
 *
 * A crash can leave a torn or zero-filled tail; decoding stops at the first record whose
 * checksum fails, and the store truncates the journal there before appending again. The CID
 * tag ties a record to the chunk it was written for, so a record that does not match the
 * file's chunk list is never taken as presence.
 */
import { crc32 } from 'node:zlib'

export const JOURNAL_RECORD_SIZE = 16
const FORMAT_VERSION = 1
const KIND_PRESENT = 0x48
const KIND_DROPPED = 0x44

export type JournalRecordKind = 'present' | 'dropped'

export interface JournalRecord {
  kind: JournalRecordKind
  /** chunk index in the content's chunk list */
  index: number
  /** CRC-32 of the chunk's CID string, see {@link cidTag} */
  cidTag: number
}

export interface DecodedJournal {
  records: JournalRecord[]
  /** bytes of intact records from the start; anything after is a torn tail */
  validLength: number
}

export function cidTag (cid: string): number {
  return crc32(cid)
}

export function encodeRecords (records: Array<{ kind: JournalRecordKind, index: number, cid: string }>): Buffer {
  const out = Buffer.alloc(records.length * JOURNAL_RECORD_SIZE)
  records.forEach((record, i) => {
    const at = i * JOURNAL_RECORD_SIZE
    out.writeUInt8(record.kind === 'present' ? KIND_PRESENT : KIND_DROPPED, at)
    out.writeUInt8(FORMAT_VERSION, at + 1)
    out.writeUInt32LE(record.index, at + 4)
    out.writeUInt32LE(cidTag(record.cid), at + 8)
    out.writeUInt32LE(crc32(out.subarray(at, at + 12)), at + 12)
  })
  return out
}

export function decodeJournal (bytes: Uint8Array): DecodedJournal {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const records: JournalRecord[] = []
  let at = 0
  for (; at + JOURNAL_RECORD_SIZE <= buf.length; at += JOURNAL_RECORD_SIZE) {
    if (buf.readUInt32LE(at + 12) !== crc32(buf.subarray(at, at + 12))) break
    const kind = buf.readUInt8(at)
    if ((kind !== KIND_PRESENT && kind !== KIND_DROPPED) || buf.readUInt8(at + 1) !== FORMAT_VERSION || buf.readUInt16LE(at + 2) !== 0) break
    records.push({
      kind: kind === KIND_PRESENT ? 'present' : 'dropped',
      index: buf.readUInt32LE(at + 4),
      cidTag: buf.readUInt32LE(at + 8)
    })
  }
  return { records, validLength: at }
}
