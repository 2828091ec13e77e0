/** The addon (native/addon.c), loaded from this package's node-gyp build. */

import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

export const enum NodeKind { Directory = 1, File = 2, Link = 3 }

export const enum UpcallKind { Lookup = 1, Opendir = 2, Open = 3, Read = 4, ReadNotice = 5, Release = 6, Log = 7, Opened = 8, Closed = 9 }

export interface Upcall {
  kind: UpcallKind
  token: number
  unique: number
  ino: number
  handle: number
  offset: number
  size: number
  flags: number
  level: number
  text: string
}

export interface NodeInit {
  kind: NodeKind
  mode: number
  size?: number
  uid?: number
  gid?: number
  /** seconds since the epoch */
  mtime?: number
  entryTimeout?: number
  attrTimeout?: number
  dynamic?: boolean
  target?: string
  backingPath?: string
  /** the backing file as it was seen (stat): the server reads only from that very file */
  backingDev?: bigint
  backingIno?: bigint
  backingBirthNs?: bigint
  complete?: boolean
  chunkEnds?: number[]
}

/** Where a file's bytes are: NodeInit's content fields. */
export type ContentInit = Pick<NodeInit, 'size' | 'backingPath' | 'backingDev' | 'backingIno' | 'backingBirthNs' | 'complete' | 'chunkEnds'>

export interface NativeStats {
  requests: number
  reads: number
  readsForwarded: number
  bytesReadLocally: number
  lookupsForwarded: number
  opensPassthrough: number
  opensLocal: number
  opensForwarded: number
  malformed: number
  /** requests passed to JavaScript that got no answer by their deadline, answered EIO */
  requestTimeouts: number
  /** backing files found not to be the file named (replaced by the store), served through the view instead */
  staleBacking: number
  /** files whose content was evicted while the mount knew them */
  evictions: number
  /** reads answered by splicing the store's file to the kernel (one copy instead of two) */
  readsSpliced: number
  passthrough: boolean
  /** reads from the store's file are spliced (asked for, and not refused by the kernel) */
  spliceReads: boolean
}

export interface NativeMountOptions {
  mountpoint: string
  threads?: number
  maxRead?: number
  passthrough?: boolean
  /** answer reads from the store's file by splicing it to the kernel (default true) */
  splice?: boolean
  maxStackDepth?: number
  allowOther?: boolean
  rootTimeout?: number
  /** worker threads drop CAP_SYS_ADMIN once mounted (the kernel then refuses passthrough) */
  dropSysAdmin?: boolean
  /** seconds a request passed up may wait for its answer before the server answers EIO (0: no deadline) */
  requestTimeout?: number
  /** seconds a model stays held after its last open file is released (default 2; 0 without a request deadline) */
  holdGrace?: number
}

/** An opaque handle to a mounted server. */
export type Server = object & { readonly __server: unique symbol }

export interface Addon {
  mount(options: NativeMountOptions, onUpcall: (upcall: Upcall) => void): Server
  setNode(server: Server, parent: number, name: string, init: NodeInit): number
  updateNode(server: Server, ino: number, init: NodeInit): void
  setComplete(server: Server, ino: number): void
  markPresent(server: Server, ino: number, offset: number, length: number): void
  /** where a file's bytes are now; another file than before starts with nothing present */
  setContent(server: Server, ino: number, content: ContentInit): void
  /** the files under `ino` left the store; the kernel forgets them and the entry `name` of `parent`; returns how many files */
  evict(server: Server, ino: number, parent: number, name: string): number
  setStatfs(server: Server, blocks: number, files: number): void
  replyError(server: Server, token: number, unique: number, errno: number): boolean
  replyEntry(server: Server, token: number, unique: number, ino: number): boolean
  replyOpen(server: Server, token: number, unique: number, handle: number): boolean
  replyData(server: Server, token: number, unique: number, data: Uint8Array): boolean
  replyDir(server: Server, token: number, unique: number, names: string[]): boolean
  /** answers a passed-up read from the store's file, if its chunks are marked present by now */
  replyLocal(server: Server, token: number, unique: number): boolean
  stats(server: Server): NativeStats
  unmount(mountpoint: string): void
  /** the mount stops keeping the process alive */
  unref(server: Server): void
}

/** Where node-gyp puts the addon, relative to this file (dist/ or src/). */
export const ADDON_PATH = fileURLToPath(new URL('../build/Release/swarm_fuse.node', import.meta.url))

let loaded: Addon | undefined

/** The addon; throws when it was not built (`npm run build:native -w @swarm/fuse-kernel`). */
export function loadAddon (): Addon {
  loaded ??= createRequire(import.meta.url)(ADDON_PATH) as Addon
  return loaded
}
