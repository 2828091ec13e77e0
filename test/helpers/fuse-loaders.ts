/**
 * Real clients of the FUSE view: Debian's Python with numpy and torch (not the `python3` first on
 * PATH, which may not see them), and fio.
 */

import { execFile } from 'node:child_process'

export const PYTHON = '/usr/bin/python3'

export interface Run { code: number, stdout: string, stderr: string }

export async function runProgram (file: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  return await new Promise(resolve => {
    execFile(file, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : Number((err as { code?: unknown }).code ?? 1) || 1, stdout, stderr })
    })
  })
}

export async function python (script: string, args: string[], timeoutMs?: number): Promise<Run> {
  return await runProgram(PYTHON, ['-c', script, ...args], timeoutMs)
}

/** Writes a checkpoint with torch.save: float32, float16 and int64 tensors of known seeds. */
export const TORCH_SAVE = `
import sys, torch
torch.manual_seed(7)
state = {
  'embed.weight': torch.randn(2048, 256),
  'layers.0.attn.weight': torch.randn(512, 512).half(),
  'layers.0.attn.bias': torch.randn(512),
  'positions': torch.arange(100000, dtype=torch.int64),
}
torch.save(state, sys.argv[1])
print(sum(t.numel() * t.element_size() for t in state.values()))
`

/** Loads a checkpoint from the mount and from the original; every tensor must be equal. */
export const TORCH_LOAD = `
import sys, torch
mounted = torch.load(sys.argv[1], map_location='cpu')
original = torch.load(sys.argv[2], map_location='cpu')
assert list(mounted.keys()) == list(original.keys()), (list(mounted.keys()), list(original.keys()))
for name, tensor in original.items():
    assert mounted[name].dtype == tensor.dtype and torch.equal(mounted[name], tensor), name
print('ok', len(mounted))
`

/**
 * Maps a safetensors file from the mount with MAP_SHARED and reads every tensor in name order (not
 * file order: the faults land all over the file), comparing with the original; numpy views the
 * mapping the way loaders do.
 */
export const MMAP_SAFETENSORS = `
import json, mmap, struct, sys
import numpy as np
with open(sys.argv[1], 'rb') as f, open(sys.argv[2], 'rb') as g:
    mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    original = g.read()
    (length,) = struct.unpack('<Q', mapped[:8])
    header = json.loads(bytes(mapped[8:8 + length]))
    base = 8 + length
    names = sorted(k for k in header if k != '__metadata__')
    for name in names:
        start, end = header[name]['data_offsets']
        view = np.frombuffer(mapped, dtype=np.uint8, count=end - start, offset=base + start)
        if view.tobytes() != original[base + start:base + end]:
            print('mismatch', name)
            sys.exit(1)
        del view
    mapped.close()
print('ok', len(names))
`
