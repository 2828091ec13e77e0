// The part of fuse-native 2.2's CommonJS API this adapter uses (the package ships no types).
declare module 'fuse-native' {
  type Callback = (...args: any[]) => void

  interface FuseOptions {
    force?: boolean
    mkdir?: boolean
    autoUnmount?: boolean
    allowOther?: boolean
    kernelCache?: boolean
    attrTimeout?: number
    entryTimeout?: number
    fsname?: string
    subtype?: string
    debug?: boolean
    timeout?: number | false | Record<string, number | false>
  }

  class Fuse {
    constructor (mountpoint: string, ops: Record<string, Callback>, options?: FuseOptions)
    readonly mnt: string
    mount (cb: (err: Error | null) => void): void
    unmount (cb: (err: Error | null) => void): void
    static unmount (mountpoint: string, cb: (err: Error | null) => void): void
  }

  export = Fuse
}
